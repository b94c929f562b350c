"""Defence registry: ``create(name, **cfg)``, ``available()``, ``register_defence``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from volrob.utils.registry import Registry

if TYPE_CHECKING:
    from volrob.defences.base import Defence

DEFENCES: Registry[Defence] = Registry("defence")


def register_defence(name: str, *, description: str = "") -> Callable[[type], type]:
    """Class decorator registering a :class:`~volrob.defences.base.Defence` subclass under ``name``."""

    def deco(cls: type) -> type:
        cls.name = name
        DEFENCES.register(name, description=description or (cls.__doc__ or "").strip().splitlines()[0])(cls)
        return cls

    return deco


def create(name: str, **cfg: Any) -> Defence:
    """Build defence ``name`` with its keyword options (see each class); bad options are ConfigErrors."""
    return DEFENCES.create(name, **cfg)


def available() -> list[str]:
    """Registered defence names."""
    return DEFENCES.available()
