"""A small, typed registry: ``register`` decorator, ``create(name, **cfg)``, ``available()``.

One instance per family (models, losses, attacks, defences); a new member is one file plus a decorator.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from volrob.errors import ConfigError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    """A registered builder and what is known about it."""

    name: str
    builder: Callable[..., T]
    description: str = ""
    extras: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> builder mapping for one family of objects."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, description: str = "", **extras: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``builder`` under ``name``; a second registration of the name is an error."""

        def deco(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ConfigError(f"{self.family} {name!r} is registered twice")
            doc = description or ((builder.__doc__ or "").strip().splitlines() or [""])[0]
            self._entries[name] = Entry(name, builder, doc, dict(extras))
            return builder

        return deco

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``; unknown names raise :class:`ConfigError` listing the choices."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.family} {name!r}; available: {', '.join(self.available())}") from None

    def create(self, name: str, **cfg: Any) -> T:
        """Build the member ``name`` with keyword configuration ``cfg``; an option the builder does not take is a
        :class:`ConfigError` listing the ones it does."""
        builder = self.entry(name).builder
        params = inspect.signature(builder).parameters.values()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            allowed = sorted(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
            unknown = sorted(set(cfg) - set(allowed))
            if unknown:
                raise ConfigError(f"{self.family} {name}: unknown option(s) {unknown}; allowed: {allowed}")
        return builder(**cfg)

    def available(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
