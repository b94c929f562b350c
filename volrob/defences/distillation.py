"""Defensive distillation, step 2 (Papernot et al., 2016): the student learns the teacher's soft labels at ``T``.

Soft labels are ``sigmoid(z_t / T)`` (region outputs) or ``softmax(z_t / T)`` (label outputs) of the teacher's
logits ``z_t``, computed with the teacher in eval mode without gradients. The student's loss is the soft binary
cross-entropy (regions) or soft cross-entropy (labels) of its ``logits / T`` against them, plus ``hard_weight``
times the usual training loss on the hard labels (default 0, as in the method). The student is evaluated at
``T = 1``: its plain logits, so nothing changes at inference.

The teacher (``teacher``: a volrob checkpoint trained with ``distill_teacher``) is loaded in :meth:`setup`; it is
refused when the file is missing, when it was not trained with ``distill_teacher`` at the same temperature, or when
its output mode differs from the student's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from volrob.checkpoint import load_checkpoint
from volrob.defences.base import BatchLoss, Defence, TrainContext
from volrob.defences.options import non_negative, positive
from volrob.defences.registry import register_defence
from volrob.errors import ConfigError


def soft_labels(teacher_logits: torch.Tensor, temperature: float, output_mode: str) -> torch.Tensor:
    """The teacher's probabilities at ``temperature``: sigmoid per channel (regions) or softmax over classes."""
    scaled = teacher_logits / temperature
    return torch.sigmoid(scaled) if output_mode == "regions" else torch.softmax(scaled, dim=1)


def soft_loss(student_logits: torch.Tensor, soft: torch.Tensor, temperature: float, output_mode: str) -> torch.Tensor:
    """Soft BCE (regions) or soft CE summed over classes (labels) of ``student_logits / T``, averaged over the
    rest."""
    scaled = student_logits.float() / temperature
    if output_mode == "regions":
        return F.binary_cross_entropy_with_logits(scaled, soft.float())
    return -(soft.float() * F.log_softmax(scaled, dim=1)).sum(1).mean()


@register_defence("distillation", description="defensive distillation: student on a teacher's soft labels at T")
class Distillation(Defence):
    """Student of defensive distillation: soft labels of a ``distill_teacher`` checkpoint at ``temperature``."""

    def __init__(self, *, teacher: str | Path | None = None, temperature: float = 20.0,
                 hard_weight: float = 0.0) -> None:
        if not isinstance(teacher, (str, Path)) or not str(teacher):
            raise ConfigError(f"defence {self.name}: teacher must be the path of a checkpoint, got {teacher!r}")
        self.teacher = str(teacher)
        self.temperature = positive(self.name, "temperature", temperature)
        self.hard_weight = non_negative(self.name, "hard_weight", hard_weight)
        self._teacher: nn.Module | None = None

    def setup(self, ctx: TrainContext) -> None:
        path = Path(self.teacher)
        if not path.is_file():
            raise ConfigError(f"defence {self.name}: teacher checkpoint does not exist", path=path)
        ckpt = load_checkpoint(path)
        trained = ckpt.provenance.get("defence") or {}
        if not isinstance(trained, dict) or trained.get("name") != "distill_teacher":
            name = trained.get("name", "none") if isinstance(trained, dict) else "unknown"
            raise ConfigError(f"defence {self.name}: teacher was trained with defence {name!r}, not "
                              "'distill_teacher'", path=path)
        t_teacher = (trained.get("params") or {}).get("temperature")
        if t_teacher != self.temperature:
            raise ConfigError(f"defence {self.name}: teacher was trained at temperature {t_teacher}, "
                              f"not {self.temperature:g}", path=path)
        if ckpt.output_mode != ctx.output_mode:
            raise ConfigError(f"defence {self.name}: teacher gives {ckpt.output_mode!r} outputs, the student "
                              f"{ctx.output_mode!r}", path=path)
        teacher = ckpt.build_predictor().to(ctx.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self._teacher = teacher

    def soft_labels(self, ctx: TrainContext, images: torch.Tensor) -> torch.Tensor:
        """The teacher's soft labels at ``temperature`` for the batch (eval mode, no gradients)."""
        if self._teacher is None:
            raise ConfigError(f"defence {self.name}: setup() must load the teacher before training")
        with torch.no_grad(), ctx.autocast():
            logits = self._teacher(images)
        return soft_labels(logits.float(), self.temperature, ctx.output_mode)

    def batch_loss(self, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, *, seed: int) -> BatchLoss:
        soft = self.soft_labels(ctx, images)
        with ctx.autocast():
            logits = ctx.predictor(images)
            loss = soft_loss(logits, soft, self.temperature, ctx.output_mode)
            parts = {"soft": float(loss.detach())}
            if self.hard_weight > 0:
                hard = ctx.loss(logits, targets)
                loss = loss + self.hard_weight * hard
                parts["hard"] = float(hard.detach())
        return BatchLoss(loss, parts)

    def params(self) -> dict[str, Any]:
        return {"teacher": self.teacher, "temperature": self.temperature, "hard_weight": self.hard_weight}
