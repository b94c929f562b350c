"""Validation of defence options (each failure is a one-line ConfigError naming the defence and the option) and
the clean/adversarial loss mix shared by the adversarial-training defences."""

from __future__ import annotations

from typing import Any

import torch

from volrob.errors import ConfigError


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive(defence: str, name: str, value: Any) -> float:
    """``value`` as a float ``> 0``."""
    if not _is_number(value) or not value > 0:
        raise ConfigError(f"defence {defence}: {name} must be a number > 0, got {value!r}")
    return float(value)


def non_negative(defence: str, name: str, value: Any) -> float:
    """``value`` as a float ``>= 0``."""
    if not _is_number(value) or not value >= 0:
        raise ConfigError(f"defence {defence}: {name} must be a number >= 0, got {value!r}")
    return float(value)


def unit_interval(defence: str, name: str, value: Any) -> float:
    """``value`` as a float in ``[0, 1]``."""
    if not _is_number(value) or not 0 <= value <= 1:
        raise ConfigError(f"defence {defence}: {name} must be a number in [0, 1], got {value!r}")
    return float(value)


def count(defence: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"defence {defence}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def flag(defence: str, name: str, value: Any) -> bool:
    """``value`` as a bool (only ``True``/``False`` accepted)."""
    if not isinstance(value, bool):
        raise ConfigError(f"defence {defence}: {name} must be true or false, got {value!r}")
    return value


def mixed(clean_weight: float, clean: torch.Tensor | None, adversarial: torch.Tensor) -> torch.Tensor:
    """``clean_weight * clean + (1 - clean_weight) * adversarial`` (``clean`` may be None when the weight is 0)."""
    if clean is None or clean_weight == 0:
        return adversarial
    return clean_weight * clean + (1.0 - clean_weight) * adversarial
