"""Loss registry. A loss maps ``(logits, target)`` to a scalar; targets follow the output mode (see below)."""

from __future__ import annotations

from typing import Any

from torch import nn

from volrob.errors import ConfigError
from volrob.utils.registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")
DEFAULTS = {"regions": "dice_bce", "labels": "dice_ce"}


def create(name: str, **cfg: Any) -> nn.Module:
    """Build loss ``name``."""
    return LOSSES.create(name, **cfg)


def available() -> list[str]:
    """Registered loss names."""
    return LOSSES.available()


def default_for(output_mode: str) -> str:
    """The default training loss for an output mode."""
    try:
        return DEFAULTS[output_mode]
    except KeyError:
        raise ConfigError(f"output mode must be one of {sorted(DEFAULTS)}, got {output_mode!r}") from None
