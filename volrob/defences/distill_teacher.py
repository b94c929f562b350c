"""Defensive distillation, step 1 (Papernot et al., 2016): train the teacher on the training loss of its logits
divided by a temperature ``T``; its checkpoint records ``T`` for the student (:mod:`volrob.defences.distillation`)."""

from __future__ import annotations

from typing import Any

import torch

from volrob.defences.base import BatchLoss, Defence, TrainContext
from volrob.defences.options import positive
from volrob.defences.registry import register_defence


@register_defence("distill_teacher", description="defensive distillation: teacher trained at temperature T")
class DistillTeacher(Defence):
    """Teacher of defensive distillation: the training loss of ``logits / temperature``."""

    def __init__(self, *, temperature: float = 20.0) -> None:
        self.temperature = positive(self.name, "temperature", temperature)

    def batch_loss(self, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, *, seed: int) -> BatchLoss:
        with ctx.autocast():
            loss = ctx.loss(ctx.predictor(images) / self.temperature, targets)
        return BatchLoss(loss, {"clean": float(loss.detach())})

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
