"""ASMA-style adaptive targeted mask attack (after Ozbulak et al., MICCAI 2019), for 3D multi-class targets.

Each step descends, per sample, the objective

    J(x_adv) = mean_elements( wrong * L(x_adv) ) + l2_weight * mean_voxels((255 * (x_adv - x))^2)

where ``wrong`` (detached) marks the elements not yet predicted as their target (a region channel per voxel in
``regions`` mode, a voxel in ``labels`` mode), so only those contribute gradient, and ``L`` is the per-element loss
towards the target: ``logit`` (as in ASMA: minus the target-class logit; in ``regions`` mode minus the logit signed
towards the wanted side) or ``ce`` (BCE per region channel / CE over classes). The second term is the squared-L2
distance to the clean input in 1/255 units, averaged over elements so its weight does not depend on volume size.

The step is ``alpha * (1 + growth * IoU_t)``: it grows with the mean IoU between the current prediction and the
target mask (foreground channels/classes present in either; 1 when none is). Directions and projection are those of
:mod:`volrob.attacks.loop` (sign for L∞, unit L2 gradient for L2, then :meth:`ThreatModel.project`); ``alpha``
defaults to ``eps / steps`` (1/255 units). Samples are attacked one at a time, each under its own budget when
``eps`` is per sample; there is no random start. Progress: one unit per step of every sample.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from volrob.attacks.base import Attack, AttackResult, RunContext, StepCounter, StepProgress
from volrob.attacks.loop import (
    build_threat,
    check_inputs,
    check_positive,
    check_steps,
    delta_norms,
    eval_mode,
    output_mode_of,
)
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel
from volrob.attacks.voxel_losses import voxel_correct, voxel_loss
from volrob.errors import ConfigError
from volrob.inference.ensemble import reject_ensemble

ASMA_LOSSES: tuple[str, ...] = ("logit", "ce")


def _target_logit(logits: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-element logit of the wanted output: signed region logit, or the target class's logit."""
    if mode == "regions":
        return torch.where(target > 0.5, logits, -logits)
    return logits.gather(1, target.long())


def asma_voxel_loss(logits: torch.Tensor, target: torch.Tensor, mode: str, loss: str) -> torch.Tensor:
    """Per-element loss towards the target (``logit``: minus the target logit; ``ce``: BCE/CE), same shape as
    :func:`~volrob.attacks.voxel_losses.voxel_loss`."""
    if loss not in ASMA_LOSSES:
        raise ConfigError(f"asma: loss must be one of {list(ASMA_LOSSES)}, got {loss!r}")
    if loss == "ce":
        return voxel_loss(logits, target, mode)
    if mode not in ("regions", "labels"):
        raise ConfigError(f"voxel loss: output mode must be 'regions' or 'labels', got {mode!r}")
    return -_target_logit(logits, target, mode)


def asma_masked_loss(logits: torch.Tensor, target: torch.Tensor, mode: str, loss: str = "logit") -> torch.Tensor:
    """Per-sample ``(B,)`` mean over elements of the loss, kept only where the prediction is not yet the target."""
    per = asma_voxel_loss(logits, target, mode, loss)
    wrong = (~voxel_correct(logits, target, mode)).detach().to(per.dtype)
    return (wrong * per).flatten(1).mean(1)


def target_iou(logits: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-sample ``(B,)`` mean IoU between the prediction and the target over foreground channels (``regions``)
    or classes ``1..K-1`` (``labels``) present in either; 1 for a sample where none is."""
    with torch.no_grad():
        if mode == "regions":
            pred, want = logits > 0, target > 0.5
        elif mode == "labels":
            classes = torch.arange(1, logits.shape[1], device=logits.device).view(1, -1, *([1] * (logits.ndim - 2)))
            pred, want = logits.argmax(1, keepdim=True) == classes, target.long() == classes
        else:
            raise ConfigError(f"asma: output mode must be 'regions' or 'labels', got {mode!r}")
        inter = (pred & want).flatten(2).sum(2).double()
        union = (pred | want).flatten(2).sum(2).double()
        present = union > 0
        per = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(union))
        count = present.sum(1)
        return torch.where(count > 0, per.sum(1) / count.clamp_min(1), torch.ones_like(per[:, 0]))


def _step_mean(rows: list[list[float]]) -> list[float]:
    """Per-step mean over samples (empty when there were no steps)."""
    return torch.tensor(rows, dtype=torch.float64).mean(0).tolist() if rows and rows[0] else []


def _check_nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"asma: {name} must be a number >= 0, got {value!r}")
    return float(value)


@register_attack("asma", description="ASMA: targeted, masked to voxels not yet at target, IoU-adaptive step, L2 term")
class ASMA(Attack):
    """ASMA: targeted, masked to voxels not yet at target, IoU-adaptive step, L2 term."""

    targeted = True

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, steps: int = 20,
                 alpha: float | None = None, growth: float = 1.0, l2_weight: float = 1e-3, loss: str = "logit",
                 seed: int = 0) -> None:
        super().__init__(threat=build_threat(threat, eps, norm, mask), seed=seed)
        self.steps = check_steps(steps)
        self.alpha = None if alpha is None else check_positive("alpha", alpha)
        self.growth = _check_nonneg("growth", growth)
        self.l2_weight = _check_nonneg("l2_weight", l2_weight)
        if loss not in ASMA_LOSSES:
            raise ConfigError(f"asma: loss must be one of {list(ASMA_LOSSES)}, got {loss!r}")
        self.loss = loss

    def alpha_for(self, threat: ThreatModel) -> float:
        """Base step in 1/255 units under one scalar-budget threat model: the explicit ``alpha`` or
        ``eps / steps``."""
        if self.alpha is not None:
            return self.alpha
        return threat.eps / max(self.steps, 1)

    @property
    def alpha_255(self) -> float | list[float]:
        """Base step in 1/255 units: the explicit ``alpha`` or ``eps / steps`` (a list for a per-sample ``eps``)."""
        if self.alpha is not None:
            return self.alpha
        return self.per_sample_value(self.alpha_for)

    def params(self) -> dict[str, Any]:
        return {"steps": self.steps, "alpha": self.alpha_255, "alpha_units": "1/255", "growth": self.growth,
                "l2_weight": self.l2_weight, "loss": self.loss, "step_rule": "alpha * (1 + growth * IoU)"}

    def progress_total(self, batch: int) -> int:
        """One unit per step of every sample."""
        return self.steps * batch

    def multiplier(self, iou: float) -> float:
        """Step multiplier for a prediction whose IoU with the target is ``iou``: ``1 + growth * iou``."""
        return 1.0 + self.growth * float(iou)

    def objective(self, logits: torch.Tensor, target: torch.Tensor, x: torch.Tensor,
                  x_adv: torch.Tensor, mode: str) -> torch.Tensor:
        """Per-sample ``(B,)`` value descended: masked loss plus ``l2_weight`` times the mean squared distance."""
        dist = ((x_adv - x) * 255.0).pow(2).flatten(1).mean(1)
        return asma_masked_loss(logits, target, mode, self.loss) + self.l2_weight * dist

    def direction(self, ctx: RunContext, grad: torch.Tensor) -> torch.Tensor:
        """Sign (L∞) or unit-L2 gradient (L2), per sample."""
        if ctx.threat.norm == "linf":
            return grad.sign()
        return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))

    def run(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
            progress: StepProgress | None = None) -> AttackResult:
        reject_ensemble(predictor, "asma")
        mode = output_mode_of(predictor)
        check_inputs(x, target, mode)
        self.threat.check_batch(x.shape[0])
        ctx = RunContext(threat=self.threat, mode=mode, counter=StepCounter(self.progress_total(x.shape[0]), progress))
        t0 = time.perf_counter()
        x, target = x.detach(), target.detach()
        outs, histories, finals, ious, clean_ious, mults = [], [], [], [], [], []
        with eval_mode(predictor):
            for i in range(x.shape[0]):  # one sample at a time: batch-independent, one graph in memory
                out = self._attack_sample(ctx.for_sample(i), predictor, x[i:i + 1], target[i:i + 1])
                for store, value in zip((outs, histories, finals, ious, clean_ious, mults), out, strict=True):
                    store.append(value)
        x_adv = torch.cat(outs)
        record = {**self.describe(), "loss": _step_mean(histories), "multiplier": _step_mean(mults),
                  "final_loss": finals, "iou_clean": clean_ious, "iou": ious, **delta_norms(x, x_adv),
                  "seconds": time.perf_counter() - t0}
        return AttackResult(x_adv, record)

    def _attack_sample(self, ctx: RunContext, predictor: torch.nn.Module, x: torch.Tensor,
                       target: torch.Tensor) -> tuple[torch.Tensor, list[float], float, float, float, list[float]]:
        """One sample under ``ctx.threat`` (its scalar-budget threat model): ``x_adv``, per-step objective, final
        objective, final and clean IoU, per-step multiplier."""
        threat, mode = ctx.threat, ctx.mode
        region = threat.region(x)
        history: list[float] = []
        mults: list[float] = []
        x_adv = x.clone()
        clean_iou = float("nan")
        for step in range(self.steps):
            x_adv.requires_grad_(True)
            logits = predictor(x_adv)
            value = self.objective(logits, target, x, x_adv, mode)
            (grad,) = torch.autograd.grad(value.sum(), x_adv)
            iou = float(target_iou(logits.detach(), target, mode))
            if step == 0:
                clean_iou = iou
            mult = self.multiplier(iou)
            history.append(float(value.detach()))
            mults.append(mult)
            alpha = self.alpha_for(threat) / 255.0 * mult
            with torch.no_grad():
                x_adv = threat.project(x, x_adv.detach() - alpha * self.direction(ctx, grad * region), region)
            ctx.counter.advance()
        with torch.no_grad():
            logits = predictor(x_adv)
            final = float(self.objective(logits, target, x, x_adv, mode))
            iou = float(target_iou(logits, target, mode))
        if self.steps == 0:
            clean_iou = iou
        return x_adv.detach(), history, final, iou, clean_iou, mults
