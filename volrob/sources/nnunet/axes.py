"""Axis order between volrob and nnU-Net.

volrob holds volumes in nibabel's voxel order ``(i, j, k)``. nnU-Net reads them with SimpleITK, whose arrays hold
the same voxels with the axes reversed ``(k, j, i)``, and then applies the plans' ``transpose_forward``. So nnU-Net's
axis ``a`` is voxel axis ``2 - transpose_forward[a]``. Every step of nnU-Net's sliding window (steps, Gaussian,
mirroring, padding) acts per axis, so permuting each window between the two orders is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from volrob.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class AxisOrder:
    """``voxel_axis[a]``: the voxel axis (0..2) that holds nnU-Net's axis ``a``."""

    voxel_axis: tuple[int, int, int]

    @classmethod
    def from_plans(cls, transpose_forward: Sequence[int], where: str) -> AxisOrder:
        """The order of a plans file whose ``transpose_forward`` is given (``where`` names it in errors)."""
        tf = list(transpose_forward) if isinstance(transpose_forward, (list, tuple)) else None
        if tf is None or sorted(tf) != [0, 1, 2] or not all(isinstance(v, int) for v in tf):
            raise ConfigError(f"{where}: transpose_forward must be a permutation of [0, 1, 2], got "
                              f"{transpose_forward!r}")
        return cls((2 - tf[0], 2 - tf[1], 2 - tf[2]))

    @property
    def nnunet_axis(self) -> tuple[int, int, int]:
        """``nnunet_axis[i]``: nnU-Net's axis that holds voxel axis ``i``."""
        inv = [0, 0, 0]
        for a, i in enumerate(self.voxel_axis):
            inv[i] = a
        return (inv[0], inv[1], inv[2])

    def to_voxel(self, values: Sequence[T]) -> tuple[T, ...]:
        """Per-axis values (patch size, spacing) from nnU-Net's order to voxel order."""
        return tuple(values[a] for a in self.nnunet_axis)

    def tensor_to_nnunet(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *voxel order)`` -> ``(B, C, *nnU-Net order)``."""
        return x.permute(0, 1, *(2 + i for i in self.voxel_axis))

    def tensor_to_voxel(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, C, *nnU-Net order)`` -> ``(B, C, *voxel order)``."""
        return y.permute(0, 1, *(2 + a for a in self.nnunet_axis))

    def record(self) -> dict[str, list[int]]:
        return {"nnunet_axis_of_voxel_axis": list(self.nnunet_axis)}
