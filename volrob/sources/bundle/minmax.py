"""MONAI's ``ScaleIntensity(minv, maxv, channel_wise=True)`` as a predictor normalisation: each channel of each case
rescaled from its own [min, max] to [minv, maxv], recomputed from the input (so it is invariant to the per-channel
[0, 1] scaling of the attack space and follows a perturbation, as the bundle's pipeline would)."""

from __future__ import annotations

from typing import Any

import torch

from volrob.errors import ConfigError
from volrob.inference.normalise import InputNorm


class MinMaxNorm(InputNorm):
    """Per-sample, per-channel ``(x - min) / (max - min) * (maxv - minv) + minv`` over every voxel.

    As MONAI's ``rescale_array``: a constant channel becomes ``x * minv``; with ``minv`` or ``maxv`` None the
    channel is only mapped to [0, 1].
    """

    pointwise = False

    def __init__(self, channels: int, *, minv: float | None = 0.0, maxv: float | None = 1.0) -> None:
        super().__init__()
        if channels < 1:
            raise ConfigError("normalisation: need channels >= 1")
        self.channels, self.minv, self.maxv = int(channels), minv, maxv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        lo, hi = x.amin(dims, keepdim=True), x.amax(dims, keepdim=True)
        constant = hi == lo
        norm = (x - lo) / torch.where(constant, torch.ones_like(hi), hi - lo)
        if self.minv is not None and self.maxv is not None:
            norm = norm * (self.maxv - self.minv) + self.minv
        flat = x * self.minv if self.minv is not None else x
        return torch.where(constant, flat, norm)

    def record(self) -> dict[str, Any]:
        return {"kind": "minmax", "minv": self.minv, "maxv": self.maxv}
