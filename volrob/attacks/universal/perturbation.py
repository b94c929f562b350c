"""Tiling a universal ROI-sized perturbation over a volume and applying it inside the threat model.

The tile grid starts at the volume origin: voxel ``p`` receives ``delta[:, p mod roi]``, so every sliding window
sees a (cyclically shifted) copy of ``delta`` and the last partial tile is cropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError


def check_delta(delta: torch.Tensor) -> None:
    """ConfigError unless ``delta`` is a float (C, D, H, W) tensor with a non-empty ROI."""
    if not isinstance(delta, torch.Tensor) or delta.ndim != 4 or not delta.is_floating_point():
        got = list(delta.shape) if isinstance(delta, torch.Tensor) else type(delta).__name__
        raise ConfigError(f"universal delta must be a float tensor (C, D, H, W), got {got}")
    if min(delta.shape[1:]) < 1:
        raise ConfigError(f"universal delta must have a non-empty ROI, got {list(delta.shape)}")


def tile_delta(delta: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``delta`` (C, *roi) repeated periodically from the origin over (C, *shape), last partial tile cropped."""
    check_delta(delta)
    spatial = tuple(int(s) for s in shape)
    if len(spatial) != 3 or min(spatial) < 1:
        raise ConfigError(f"tile_delta shape must be three positive integers, got {list(shape)}")
    reps = [1] + [-(-s // r) for s, r in zip(spatial, delta.shape[1:], strict=True)]
    tiled = delta.repeat(*reps)
    return tiled[:, :spatial[0], :spatial[1], :spatial[2]]


def shifted_delta(delta: torch.Tensor, offset: Sequence[int]) -> torch.Tensor:
    """The ROI-sized piece of the tiled ``delta`` that starts at voxel ``offset``: ``delta[:, (offset + i) mod roi]``.

    Differentiable in ``delta`` (a cyclic roll)."""
    check_delta(delta)
    shifts = tuple(-(int(o) % r) for o, r in zip(offset, delta.shape[1:], strict=True))
    return torch.roll(delta, shifts=shifts, dims=(1, 2, 3))


def apply_universal(x: torch.Tensor, delta: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """``x`` (B, C, *spatial) plus the tiled ``delta`` inside the threat model's region, projected to its threat
    set (L∞ ball of radius ``eps/255`` and valid range). ``x`` is not modified."""
    if not isinstance(threat, ThreatModel) or threat.norm != "linf":
        raise ConfigError("apply_universal: threat must be an L-inf ThreatModel (universal budgets are L-inf)")
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or not x.is_floating_point():
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"apply_universal: x must be a float tensor (B, C, D, H, W), got {got}")
    check_delta(delta)
    if delta.shape[0] != x.shape[1]:
        raise ConfigError(f"apply_universal: delta has {delta.shape[0]} channels, x has {x.shape[1]}")
    threat.check_batch(x.shape[0])
    x = x.detach()
    tiled = tile_delta(delta.detach().to(device=x.device, dtype=x.dtype), x.shape[2:])[None]
    region = threat.region(x)
    return threat.project(x, x + tiled * region, region)
