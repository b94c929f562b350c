"""SegPGD (Gu et al., ECCV 2022): PGD whose per-voxel loss is split into correctly and wrongly classified voxels,
weighted ``1 - λ_t`` and ``λ_t`` with ``λ_t = t / (2T)``; early steps push the still-correct voxels, later steps
balance both. Per-voxel loss: BCE per region channel (``regions``) or CE (``labels``); see
:mod:`volrob.attacks.voxel_losses` (fixed: no ``loss`` option). Other options as :mod:`volrob.attacks.pgd`.
"""

from __future__ import annotations

from typing import Any

import torch

from volrob.attacks.base import RunContext
from volrob.attacks.loop import FixedObjectivePGD
from volrob.attacks.registry import register_attack
from volrob.attacks.voxel_losses import segpgd_lambda, segpgd_loss


@register_attack("segpgd", description="SegPGD: correct/wrong voxel loss split with lambda_t = t / (2T)")
class SegPGD(FixedObjectivePGD):
    """SegPGD: correct/wrong voxel loss split with lambda_t = t / (2T)."""

    def params(self) -> dict[str, Any]:
        return {**super().params(), "loss": "segpgd", "lambda": "t / (2T)"}

    def objective(self, ctx: RunContext, logits: torch.Tensor, target: torch.Tensor, step: int) -> torch.Tensor:
        return segpgd_loss(logits, target, ctx.mode, segpgd_lambda(step, max(self.steps, 1)))
