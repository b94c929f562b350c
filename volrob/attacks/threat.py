"""The threat model every attack declares and every result records.

Attacks act on the predictor's input: each channel scaled to ``[0, 1]`` by the data-side preprocessing
(:mod:`volrob.data.preprocess`). Budgets are given in 1/255 units of that space (``eps=8`` means 8/255 per voxel
for L∞; for L2 the same units measure the Euclidean norm of the whole per-sample perturbation). The network's own
normalisation lives inside the predictor, so the budget does not depend on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from volrob.errors import ConfigError

NORMS: tuple[str, ...] = ("linf", "l2")
MASKS: tuple[str, ...] = ("brain", "none")


@dataclass(frozen=True)
class ThreatModel:
    """Budget ``eps`` (1/255 units), its norm, the valid range, and where the perturbation may act.

    ``mask="brain"``: only voxels that are non-zero in at least one channel of the clean input may change (the
    skull-stripped background stays exactly 0); ``"none"``: every voxel may change.
    """

    eps: float = 8.0
    norm: str = "linf"
    mask: str = "brain"
    clip_min: float = 0.0
    clip_max: float = 1.0

    def __post_init__(self) -> None:
        if not self.eps >= 0:
            raise ConfigError(f"threat model: eps must be >= 0 (in 1/255 units), got {self.eps}")
        if self.norm not in NORMS:
            raise ConfigError(f"threat model: norm must be one of {list(NORMS)}, got {self.norm!r}")
        if self.mask not in MASKS:
            raise ConfigError(f"threat model: mask must be one of {list(MASKS)}, got {self.mask!r}")
        if not self.clip_min < self.clip_max:
            raise ConfigError("threat model: need clip_min < clip_max")

    @property
    def radius(self) -> float:
        """The budget in the [0, 1] input space: ``eps / 255``."""
        return self.eps / 255.0

    def region(self, x: torch.Tensor) -> torch.Tensor:
        """Float mask ``(B, 1, *spatial)`` of voxels the attack may change (1) or must leave alone (0)."""
        if self.mask == "none":
            return torch.ones_like(x[:, :1])
        return (x != 0).any(dim=1, keepdim=True).to(x.dtype)

    def project(self, x: torch.Tensor, x_adv: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """Nearest point of the threat set: budget ball around ``x``, outside-region voxels reset, valid range."""
        delta = (x_adv - x) * region
        if self.norm == "linf":
            delta = delta.clamp(-self.radius, self.radius)
        else:
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
            delta = delta * torch.clamp(self.radius / norms, max=1.0)
        return (x + delta).clamp(self.clip_min, self.clip_max)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "space": "per-channel [0, 1] scaled input", "eps_units": "1/255"}
