"""No defence: the plain training loss on the clean batch (what ``volrob train`` does without a ``defence:``)."""

from __future__ import annotations

from typing import Any

import torch

from volrob.defences.base import BatchLoss, Defence, TrainContext
from volrob.defences.registry import register_defence


@register_defence("none", description="standard training on clean crops (no defence)")
class NoDefence(Defence):
    """Standard training: the training loss of the clean batch."""

    def params(self) -> dict[str, Any]:
        return {}

    def batch_loss(self, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, *, seed: int) -> BatchLoss:
        with ctx.autocast():
            loss = ctx.loss(ctx.predictor(images), targets)
        return BatchLoss(loss, {"clean": float(loss.detach())})
