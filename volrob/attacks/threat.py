"""The threat model every attack declares and every result records.

Attacks act on the predictor's input: each channel scaled to ``[0, 1]`` by the data-side preprocessing
(:mod:`volrob.data.preprocess`). Budgets are given in 1/255 units of that space (``eps=8`` means 8/255 per voxel
for L∞; for L2 the same units measure the Euclidean norm of the whole per-sample perturbation). The network's own
normalisation lives inside the predictor, so the budget does not depend on it.

``eps`` is one number for the whole batch or one number per sample (a tuple; a list, 1-D array or 1-D tensor is
converted). A per-sample budget must have as many entries as the batch it is used on; :meth:`ThreatModel.for_sample`
gives the scalar-budget threat model of one sample, which is how the attack loops use it.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import torch

from volrob.errors import ConfigError

NORMS: tuple[str, ...] = ("linf", "l2")
MASKS: tuple[str, ...] = ("brain", "none")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_eps(eps: Any) -> float | tuple[float, ...]:
    """``eps`` validated: a number ``>= 0`` (kept as given) or a non-empty tuple of floats ``>= 0``."""
    if hasattr(eps, "ndim") and hasattr(eps, "tolist"):  # a tensor or an array
        if eps.ndim > 1:
            raise ConfigError(f"threat model: eps must be a number or a 1-D sequence, got shape {list(eps.shape)}")
        eps = eps.tolist()
    if _is_number(eps):
        if not eps >= 0:
            raise ConfigError(f"threat model: eps must be >= 0 (in 1/255 units), got {eps}")
        return eps if isinstance(eps, (int, float)) else float(eps)
    if not isinstance(eps, (list, tuple)):
        raise ConfigError(f"threat model: eps must be a number or a sequence of numbers, got {type(eps).__name__}")
    if not eps:
        raise ConfigError("threat model: eps must not be an empty sequence (one value per sample)")
    for i, value in enumerate(eps):
        if not _is_number(value):
            raise ConfigError(f"threat model: eps[{i}] must be a number, got {type(value).__name__}")
        if not value >= 0:
            raise ConfigError(f"threat model: eps[{i}] must be >= 0 (in 1/255 units), got {value}")
    return tuple(float(v) for v in eps)


@dataclass(frozen=True)
class ThreatModel:
    """Budget ``eps`` (1/255 units; one number or one per sample), its norm, the valid range, and where the
    perturbation may act.

    ``mask="brain"``: only voxels that are non-zero in at least one channel of the clean input may change (the
    skull-stripped background stays exactly 0); ``"none"``: every voxel may change.
    """

    eps: float | tuple[float, ...] = 8.0
    norm: str = "linf"
    mask: str = "brain"
    clip_min: float = 0.0
    clip_max: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _check_eps(self.eps))
        if self.norm not in NORMS:
            raise ConfigError(f"threat model: norm must be one of {list(NORMS)}, got {self.norm!r}")
        if self.mask not in MASKS:
            raise ConfigError(f"threat model: mask must be one of {list(MASKS)}, got {self.mask!r}")
        if not self.clip_min < self.clip_max:
            raise ConfigError("threat model: need clip_min < clip_max")

    @property
    def per_sample(self) -> bool:
        """Whether ``eps`` gives one budget per sample."""
        return isinstance(self.eps, tuple)

    @property
    def radius(self) -> float:
        """The budget in the [0, 1] input space: ``eps / 255`` (scalar ``eps`` only; see :meth:`radii`)."""
        if isinstance(self.eps, tuple):
            raise ConfigError(f"threat model: eps has {len(self.eps)} per-sample values; radius needs one, "
                              "use for_sample(i) or radii(x)")
        return self.eps / 255.0

    def check_batch(self, batch: int) -> None:
        """ConfigError when a per-sample ``eps`` does not have one value per sample of a ``batch``."""
        if isinstance(self.eps, tuple) and len(self.eps) != batch:
            raise ConfigError(f"threat model: eps has {len(self.eps)} per-sample values but the batch has "
                              f"{batch} samples")

    def for_sample(self, index: int) -> ThreatModel:
        """The threat model of sample ``index``: this one when ``eps`` is scalar, else a copy with ``eps[index]``."""
        if not isinstance(self.eps, tuple):
            return self
        if not -len(self.eps) <= index < len(self.eps):
            raise ConfigError(f"threat model: sample index {index} is out of range for {len(self.eps)} eps values")
        return dataclasses.replace(self, eps=self.eps[index])

    def radii(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample budgets in the [0, 1] space, shaped ``(B, 1, ..., 1)`` to broadcast against ``x``."""
        self.check_batch(x.shape[0])
        eps = self.eps if isinstance(self.eps, tuple) else (self.eps,) * x.shape[0]
        radii = torch.tensor([e / 255.0 for e in eps], dtype=torch.float64)
        return radii.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))

    def region(self, x: torch.Tensor) -> torch.Tensor:
        """Float mask ``(B, 1, *spatial)`` of voxels the attack may change (1) or must leave alone (0)."""
        if self.mask == "none":
            return torch.ones_like(x[:, :1])
        return (x != 0).any(dim=1, keepdim=True).to(x.dtype)

    def project(self, x: torch.Tensor, x_adv: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """Nearest point of the threat set: budget ball around ``x`` (each sample's own radius when ``eps`` is
        per sample), outside-region voxels reset, valid range."""
        delta = (x_adv - x) * region
        if self.norm == "linf":
            if isinstance(self.eps, tuple):
                r = self.radii(x)
                delta = torch.minimum(torch.maximum(delta, -r), r)
            else:
                delta = delta.clamp(-self.radius, self.radius)
        else:
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
            scale = norms.reciprocal() * self.radii(x) if isinstance(self.eps, tuple) else self.radius / norms
            delta = delta * torch.clamp(scale, max=1.0)
        return (x + delta).clamp(self.clip_min, self.clip_max)

    def to_dict(self) -> dict[str, Any]:
        eps = list(self.eps) if isinstance(self.eps, tuple) else self.eps
        return {**asdict(self), "eps": eps, "space": "per-channel [0, 1] scaled input", "eps_units": "1/255"}
