"""Attack registry: ``create(name, **cfg)``, ``available()``, ``register_attack``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from volrob.utils.registry import Registry

if TYPE_CHECKING:
    from volrob.attacks.base import Attack

ATTACKS: Registry[Attack] = Registry("attack")


def register_attack(name: str, *, description: str = "", family: str = "pixel") -> Callable[[type], type]:
    """Class decorator registering an :class:`~volrob.attacks.base.Attack` subclass under ``name``."""

    def deco(cls: type) -> type:
        cls.name = name
        ATTACKS.register(name, description=description or (cls.__doc__ or "").strip().splitlines()[0],
                         family=family)(cls)
        return cls

    return deco


def create(name: str, **cfg: Any) -> Attack:
    """Build attack ``name``; keyword options are the attack's own (see each class) plus the common ones."""
    return ATTACKS.create(name, **cfg)


def available() -> list[str]:
    """Registered attack names."""
    return ATTACKS.available()
