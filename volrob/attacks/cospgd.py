"""CosPGD (Agnihotri et al., ICML 2024): PGD whose per-voxel loss is weighted by the detached cosine similarity
between the predicted probabilities and the one-hot target, so voxels already fooled contribute little.
Per-voxel loss and weights: :mod:`volrob.attacks.voxel_losses` (fixed: no ``loss`` option).
Other options as :mod:`volrob.attacks.pgd`.
"""

from __future__ import annotations

from typing import Any

import torch

from volrob.attacks.base import RunContext
from volrob.attacks.loop import FixedObjectivePGD
from volrob.attacks.registry import register_attack
from volrob.attacks.voxel_losses import cospgd_loss


@register_attack("cospgd", description="CosPGD: per-voxel loss weighted by cosine similarity to the target")
class CosPGD(FixedObjectivePGD):
    """CosPGD: per-voxel loss weighted by cosine similarity to the target."""

    def params(self) -> dict[str, Any]:
        return {**super().params(), "loss": "cospgd"}

    def objective(self, ctx: RunContext, logits: torch.Tensor, target: torch.Tensor, step: int) -> torch.Tensor:
        return cospgd_loss(logits, target, ctx.mode)
