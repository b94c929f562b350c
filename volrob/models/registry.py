"""Model registry. Builders take keyword options only and return an ``nn.Module``.

Every builder accepts ``in_channels``, ``out_channels``, ``roi_size`` (the sliding-window ROI the model will see)
and ``preset`` (``"tiny"`` for tests and CPU demos, ``"paper"`` for published sizes), plus model-specific keys.
A builder checks its own constraints (e.g. UNETR's fixed image size) and raises :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from volrob.errors import ConfigError
from volrob.utils.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
PRESETS: tuple[str, ...] = ("tiny", "paper")


@dataclass(frozen=True)
class ModelInfo:
    """What the ``volrob models`` listing shows for a model."""

    name: str
    description: str
    family: str
    fixed_input: bool


def register_model(
    name: str, *, family: str, description: str = "", fixed_input: bool = False
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``@register_model("unet", family="cnn")`` over a builder ``(**cfg) -> nn.Module``.

    ``fixed_input``: the network only accepts inputs of exactly ``roi_size`` (e.g. UNETR's positional embedding).
    """
    return MODELS.register(name, description=description, family=family, fixed_input=fixed_input)


def create(name: str, **cfg: Any) -> nn.Module:
    """Build model ``name`` from keyword configuration (see module docstring for the common keys)."""
    return MODELS.create(name, **cfg)


def available() -> list[str]:
    """Names of all registered models."""
    return MODELS.available()


def model_info(name: str) -> ModelInfo:
    """Description and family of a registered model."""
    e = MODELS.entry(name)
    return ModelInfo(e.name, e.description, str(e.extras.get("family", "")), bool(e.extras.get("fixed_input")))


def check_common(
    name: str, *, in_channels: int, out_channels: int, roi_size: Sequence[int], preset: str
) -> tuple[int, int, int]:
    """Validate the keys every builder shares; returns ``roi_size`` as a 3-tuple."""
    if preset not in PRESETS:
        raise ConfigError(f"model {name}: preset must be one of {list(PRESETS)}, got {preset!r}")
    for key, val in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(val, int) or val < 1:
            raise ConfigError(f"model {name}: {key} must be a positive integer, got {val!r}")
    roi = tuple(int(r) for r in roi_size)
    if len(roi) != 3 or any(r < 1 for r in roi):
        raise ConfigError(f"model {name}: roi_size must be three positive integers, got {list(roi_size)}")
    return roi  # type: ignore[return-value]


def check_divisible(name: str, roi: Sequence[int], factor: int) -> None:
    """Error unless every ROI side is divisible by ``factor`` (the network's total down-sampling)."""
    if any(r % factor for r in roi):
        raise ConfigError(f"model {name}: roi_size {list(roi)} must be divisible by {factor} on every side")


def merge_preset(
    name: str, presets: dict[str, dict[str, Any]], preset: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """The preset's keyword arguments with ``overrides`` applied; an override the preset lacks is an error."""
    cfg = dict(presets[preset])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ConfigError(f"model {name}: unknown option(s) {unknown}; allowed: {sorted(cfg)}")
    cfg.update(overrides)
    return cfg
