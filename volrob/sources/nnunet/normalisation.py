"""nnU-Net's intensity normalisation, applied inside the predictor on the [0, 1] attack space.

nnU-Net normalises each channel of the cropped case before the sliding window. Schemes reproduced here are invariant
to a positive linear rescaling of the channel, so on volrob's ``linear`` scaling (division by the brain maximum,
no clipping) the network sees nnU-Net's numbers:

- ``ZScoreNormalization`` with ``use_mask_for_norm``: mean and population std over nnU-Net's crop mask (voxels
  non-zero in any channel, with enclosed holes filled), ``(x - mean) / max(std, 1e-8)`` inside it, 0 outside.
- ``ZScoreNormalization`` without the mask: the same statistics over every voxel of the cropped volume.
- ``RescaleTo01Normalization``: ``(x - min) / max(max - min, 1e-8)`` over the cropped volume.

The statistics are recomputed from the input and are differentiable (the mask is not: it is a set of voxels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_fill_holes

from volrob.errors import ConfigError
from volrob.inference.normalise import InputNorm

ZSCORE, RESCALE = "ZScoreNormalization", "RescaleTo01Normalization"
SCHEMES = (ZSCORE, RESCALE)
EPS = 1e-8  # nnU-Net's floor on the std / range for float32 data


def crop_mask(x: torch.Tensor) -> torch.Tensor:
    """nnU-Net's non-zero mask of each sample ``(B, 1, *spatial)``: any channel non-zero, enclosed holes filled."""
    nonzero = (x != 0).any(1).cpu().numpy()
    filled = np.stack([binary_fill_holes(m) for m in nonzero])
    return torch.from_numpy(filled).to(x.device)[:, None]


class NnunetNorm(InputNorm):
    """Per-channel nnU-Net normalisation of ``x (B, C, *spatial)``; ``schemes[c]`` and ``use_mask[c]`` per channel."""

    pointwise = False

    def __init__(self, schemes: Sequence[str], use_mask: Sequence[bool]) -> None:
        super().__init__()
        bad = sorted({s for s in schemes if s not in SCHEMES})
        if bad:
            raise ConfigError(f"plans.json normalization_schemes {bad} are not supported on volrob's [0, 1] attack "
                              f"space (they depend on absolute intensities); supported: {list(SCHEMES)}")
        if len(schemes) != len(use_mask) or not schemes:
            raise ConfigError("normalisation: need one scheme and one use_mask_for_norm entry per channel")
        self.schemes, self.use_mask = tuple(schemes), tuple(bool(m) for m in use_mask)
        self.channels = len(self.schemes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        mask = crop_mask(x) if any(m and s == ZSCORE for s, m in zip(self.schemes, self.use_mask, strict=True)) \
            else None
        out = []
        for c, (scheme, masked) in enumerate(zip(self.schemes, self.use_mask, strict=True)):
            v = x[:, c : c + 1]
            if scheme == RESCALE:
                lo = v.amin(dims, keepdim=True)
                out.append((v - lo) / (v.amax(dims, keepdim=True) - lo).clamp(min=EPS))
                continue
            if masked:
                assert mask is not None
                w = mask.to(v.dtype)
                n = w.sum(dims, keepdim=True).clamp(min=1)
                mean = (v * w).sum(dims, keepdim=True) / n
                var = (((v - mean) * w) ** 2).sum(dims, keepdim=True) / n
                std = var.clamp(min=EPS**2).sqrt()  # max(std, eps); clamped before sqrt: finite gradient at 0
                out.append(torch.where(mask, (v - mean) / std, torch.zeros_like(v)))
            else:
                mean = v.mean(dims, keepdim=True)
                std = ((v - mean) ** 2).mean(dims, keepdim=True).clamp(min=EPS**2).sqrt()
                out.append((v - mean) / std)
        return torch.cat(out, 1)

    def record(self) -> dict[str, Any]:
        return {"kind": "nnunet", "schemes": list(self.schemes), "use_mask_for_norm": list(self.use_mask),
                "mask": "non-zero in any channel, holes filled", "eps": EPS}
