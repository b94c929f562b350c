"""What Dice, HD95 and NSD are when the prediction, the ground truth or both are empty — never NaN.

Both empty: the model correctly predicts absence, so Dice 1, HD95 0 mm, NSD 1.
Exactly one empty: a total failure, so Dice 0, NSD 0 and HD95 a large finite penalty:

- ``"brats"``: 373.13 mm, the value the BraTS challenge uses (the diagonal of its 240 x 240 x 155 grid at 1 mm);
- ``"diagonal"``: the diagonal of this image's physical extent, ``sqrt(sum((shape_i * spacing_i) ** 2))``,
  which is larger than any surface distance the image can hold.

Returning NaN and letting a mean drop it would make an attack that erases the tumour look like an improvement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from volrob.errors import ConfigError

POLICIES: tuple[str, ...] = ("brats", "diagonal")
METRICS: tuple[str, ...] = ("dice", "hd95", "nsd")
BRATS_HD95_MM = 373.13
"""HD95 (mm) BraTS assigns when exactly one of prediction and ground truth is empty."""


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the diagonal of an image of ``shape`` voxels with voxel ``spacing`` (mm)."""
    if len(shape) != len(spacing):
        raise ConfigError(f"shape {list(shape)} and spacing {list(spacing)} must have the same length")
    return math.sqrt(sum((float(n) * float(s)) ** 2 for n, s in zip(shape, spacing, strict=True)))


@dataclass(frozen=True)
class EmptyPolicy:
    """The documented values of every metric for empty prediction and/or ground truth."""

    name: str = "brats"

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ConfigError(f"empty_policy must be one of {list(POLICIES)}, got {self.name!r}")

    def missing_hd95(self, shape: Sequence[int], spacing: Sequence[float]) -> float:
        """HD95 (mm) when exactly one of prediction and ground truth is empty."""
        return BRATS_HD95_MM if self.name == "brats" else image_diagonal_mm(shape, spacing)

    def value(
        self, metric: str, *, pred_empty: bool, gt_empty: bool, shape: Sequence[int], spacing: Sequence[float]
    ) -> float | None:
        """The policy's value of ``metric`` for this emptiness pattern, or ``None`` when neither mask is empty."""
        if metric not in METRICS:
            raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}")
        if not (pred_empty or gt_empty):
            return None
        if pred_empty and gt_empty:
            return 0.0 if metric == "hd95" else 1.0
        return self.missing_hd95(shape, spacing) if metric == "hd95" else 0.0


def get_policy(policy: str | EmptyPolicy) -> EmptyPolicy:
    """An :class:`EmptyPolicy` from its name (or the policy itself)."""
    if isinstance(policy, EmptyPolicy):
        return policy
    if not isinstance(policy, str):
        raise ConfigError(f"empty_policy must be one of {list(POLICIES)}, got {policy!r}")
    return EmptyPolicy(policy)
