"""VAFT (Hanif et al., 2023): adversarial training on VAFA-3D examples plus a frequency-consistency loss.

``loss = clean_weight * L(x) + (1 - clean_weight) * L(x_adv) + freq_weight * F`` with
``F = ||D(z_clean) - D(z_adv)||_1 / ||D(z_clean)||_1``, ``D`` the orthonormal 3D DCT over the spatial axes of the
logits ``z``, computed per sample and averaged over the batch. The clean side (``z_clean``, numerator and
normaliser) is detached: it is the reference the adversarial prediction is pulled towards, so the term cannot
drag the clean prediction towards the adversarial one (which would trade clean accuracy for consistency), and the
normaliser is a constant scale rather than something the network could inflate to shrink the term.

``x_adv`` comes from volrob's ``vafa3d`` attack (options ``q_max``, ``steps``, ``block_size`` passed through),
crafted inside :func:`crafting` against the training loss.
"""

from __future__ import annotations

from typing import Any

import torch

from volrob import attacks
from volrob.attacks.base import Attack
from volrob.defences.adversarial import AttackTraining
from volrob.defences.base import BatchLoss, TrainContext
from volrob.defences.options import count, mixed, non_negative, positive
from volrob.defences.registry import register_defence
from volrob.signal.dct import dct_nd

SPATIAL = (2, 3, 4)


def frequency_consistency(z_clean: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||D(z_clean) - D(z_adv)||_1 / ||D(z_clean)||_1`` averaged over the batch (clean side
    detached)."""
    d_clean = dct_nd(z_clean.detach().float(), SPATIAL)
    d_adv = dct_nd(z_adv.float(), SPATIAL)
    num = (d_clean - d_adv).abs().flatten(1).sum(1)
    den = d_clean.abs().flatten(1).sum(1).clamp_min(1e-12)
    return (num / den).mean()


@register_defence("vaft", description="VAFA adversarial training with a frequency-consistency loss (Hanif et al.)")
class Vaft(AttackTraining):
    """Adversarial training on VAFA-3D examples plus ``freq_weight`` times the DCT-domain logit consistency."""

    def __init__(self, *, q_max: float = 20.0, steps: int = 20, block_size: int | None = None,
                 freq_weight: float = 1.0, clean_weight: float = 0.0) -> None:
        super().__init__(clean_weight=clean_weight)
        self.q_max = positive(self.name, "q_max", q_max)
        self.steps = count(self.name, "steps", steps)
        self.block_size = None if block_size is None else count(self.name, "block_size", block_size)
        self.freq_weight = non_negative(self.name, "freq_weight", freq_weight)
        attacks.create("vafa3d", **self._attack_options())  # the attack's own checks (e.g. q_max >= q_min)

    def _attack_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"q_max": self.q_max, "steps": self.steps}
        if self.block_size is not None:
            opts["block"] = self.block_size
        return opts

    def attack(self, ctx: TrainContext, seed: int) -> Attack:
        return attacks.create("vafa3d", **self._attack_options(), loss=ctx.loss, seed=seed)

    def batch_loss(self, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, *, seed: int) -> BatchLoss:
        x_adv = self.craft(ctx, images, targets, seed)
        with ctx.autocast():
            z_adv = ctx.predictor(x_adv)
            adv = ctx.loss(z_adv, targets)
            with torch.set_grad_enabled(self.clean_weight > 0 and torch.is_grad_enabled()):
                z_clean = ctx.predictor(images)  # only the clean loss needs its graph; F detaches it
            clean = ctx.loss(z_clean, targets) if self.clean_weight > 0 else None
            freq = frequency_consistency(z_clean, z_adv)
        loss = mixed(self.clean_weight, clean, adv) + self.freq_weight * freq
        parts = {"adversarial": float(adv.detach()), "frequency": float(freq.detach())}
        if clean is not None:
            parts["clean"] = float(clean.detach())
        return BatchLoss(loss, parts)

    def params(self) -> dict[str, Any]:
        return {"q_max": self.q_max, "steps": self.steps, "block_size": self.block_size,
                "freq_weight": self.freq_weight, **super().params()}
