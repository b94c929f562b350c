"""The network's input normalisation, applied inside the predictor (the attack space stays the [0, 1] scaling).

Two kinds:

- :class:`FixedNorm`: ``(x - mean) / std`` with per-channel constants fixed at training time (volrob's own
  checkpoints). Pointwise, so the predictor may apply it window by window.
- :class:`ZScoreNorm`: per-case, per-channel z-score over the non-zero voxels, recomputed from the input it is given
  (nnU-Net's ``ZScoreNormalization`` with a brain mask, MONAI's ``NormalizeIntensity(nonzero=True,
  channel_wise=True)``, or over every voxel: ``nonzero=False``). It is invariant to any positive affine rescaling
  of a channel, so on the [0, 1] attack space (a linear map of the raw intensities, no clipping) it gives the
  network exactly the values its own pipeline would. The statistics are differentiable: an attack sees how its
  perturbation moves them, as it would when the perturbed image is fed to the network's own pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from volrob.errors import ConfigError

ZSCORE_MASKS = ("any", "channel", "all")
ZERO_STD_RULES = ("clamp", "one")


class InputNorm(nn.Module):
    """``x (B, C, *spatial) -> network input``; ``pointwise`` says whether it may be applied window by window."""

    pointwise: bool = True
    channels: int

    def record(self) -> dict[str, Any]:
        """JSON description of the normalisation (run records)."""
        raise NotImplementedError


class FixedNorm(InputNorm):
    """``(x - mean) / std`` with fixed per-channel constants."""

    pointwise = True

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not len(mean) or min(std) <= 0:
            raise ConfigError("normalisation: mean and std need one entry per channel and std > 0")
        self.channels = len(mean)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def record(self) -> dict[str, Any]:
        return {"kind": "fixed", "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}


class ZScoreNorm(InputNorm):
    """Per-sample, per-channel ``(x - mean) / std`` over a mask of voxels; 0 outside it.

    ``mask="any"``: the voxels non-zero in any channel (nnU-Net's crop mask); ``"channel"``: each channel's own
    non-zero voxels (MONAI's ``nonzero=True, channel_wise=True``); ``"all"``: every voxel (MONAI's
    ``nonzero=False, channel_wise=True``). ``std`` is the population standard deviation; a channel with no masked
    voxel is left at zero. ``zero_std`` says what a vanishing std becomes: ``"clamp"`` divides by
    ``max(std, min_std)`` (nnU-Net); ``"one"`` divides a channel that is constant over its mask by 1 (MONAI's rule
    for a zero std), so it maps to 0 and not to rounding noise blown up by ``1 / min_std``.
    """

    pointwise = False

    def __init__(self, channels: int, *, mask: str = "any", min_std: float = 1e-8, zero_std: str = "clamp") -> None:
        super().__init__()
        if mask not in ZSCORE_MASKS:
            raise ConfigError(f"normalisation.mask must be one of {list(ZSCORE_MASKS)}, got {mask!r}")
        if zero_std not in ZERO_STD_RULES:
            raise ConfigError(f"normalisation.zero_std must be one of {list(ZERO_STD_RULES)}, got {zero_std!r}")
        if channels < 1 or not min_std > 0:
            raise ConfigError("normalisation: need channels >= 1 and min_std > 0")
        self.channels, self.mask, self.min_std, self.zero_std = int(channels), mask, float(min_std), zero_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask == "all":
            m = torch.ones_like(x, dtype=torch.bool)
        else:
            nonzero = x != 0
            m = nonzero.any(1, keepdim=True).expand_as(x) if self.mask == "any" else nonzero
        w = m.to(x.dtype)
        dims = tuple(range(2, x.ndim))
        n = w.sum(dims, keepdim=True).clamp(min=1)
        mean = (x * w).sum(dims, keepdim=True) / n
        var = (((x - mean) * w) ** 2).sum(dims, keepdim=True) / n
        if self.zero_std == "one":
            hi = torch.where(m, x, torch.full_like(x, -torch.inf)).detach().amax(dims, keepdim=True)
            lo = torch.where(m, x, torch.full_like(x, torch.inf)).detach().amin(dims, keepdim=True)
            constant = (hi <= lo) | (var == 0)
            std = torch.where(constant, torch.ones_like(var), var).sqrt()  # no sqrt(0): no infinite gradient
        else:
            std = var.clamp(min=self.min_std**2).sqrt()  # clamp before sqrt: no infinite gradient at 0
        return torch.where(m, (x - mean) / std, torch.zeros_like(x))

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "zscore", "mask": self.mask, "min_std": self.min_std}
        if self.zero_std != "clamp":
            out["zero_std"] = self.zero_std
        return out


__all__ = ["ZERO_STD_RULES", "ZSCORE_MASKS", "FixedNorm", "InputNorm", "ZScoreNorm"]
