"""TRADES (Zhang et al., 2019): ``loss = L(x) + beta * KL(p(x) || p(x_adv))``.

``x_adv`` maximises the KL term: it starts at ``x + 0.001 * N(0, 1)`` (brain voxels only; the "small random start"
of the method, drawn on CPU from the step seed) and takes ``steps`` signed steps of size ``alpha`` (1/255 units,
default ``2.5 * eps / steps``), each projected by volrob's threat model (L∞ ball of ``eps``, brain region, valid
range). The attack ascends a divergence from the clean prediction, not a loss against labels, so none of the
registered attacks fits; it runs inside :func:`crafting` like them. The clean prediction it diverges from is made
in the same eval-mode pass. In the training loss both sides of the KL keep their gradient, as in the method.
KL per output mode: see :func:`~volrob.defences.divergence.output_kl`.
"""

from __future__ import annotations

from typing import Any

import torch

from volrob.attacks.loop import per_sample_generator
from volrob.attacks.threat import ThreatModel
from volrob.defences.base import BatchLoss, Defence, TrainContext, crafting
from volrob.defences.divergence import output_kl
from volrob.defences.options import count, non_negative, positive
from volrob.defences.registry import register_defence

START_STD = 0.001


@register_defence("trades", description="TRADES: clean loss + beta * KL(clean || adversarial) (Zhang et al. 2019)")
class Trades(Defence):
    """TRADES: clean training loss plus ``beta`` times the KL between clean and adversarial predictions."""

    def __init__(self, *, eps: float = 4.0, steps: int = 3, alpha: float | None = None, beta: float = 6.0) -> None:
        self.eps = positive(self.name, "eps", eps)
        self.steps = count(self.name, "steps", steps)
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else positive(self.name, "alpha", alpha)
        self.beta = non_negative(self.name, "beta", beta)

    def craft(self, ctx: TrainContext, images: torch.Tensor, seed: int) -> torch.Tensor:
        """``x_adv`` maximising ``KL(p(x) || p(x_adv))`` (network frozen in eval mode; detached)."""
        threat = ThreatModel(eps=self.eps, norm="linf", mask="brain")
        x = images.detach()
        region = threat.region(x)
        draw = torch.randn(x.shape, generator=per_sample_generator(seed), dtype=torch.float64)
        x_adv = threat.project(x, x + (draw * START_STD).to(device=x.device, dtype=x.dtype) * region, region)
        with crafting(ctx.net), ctx.autocast(), torch.enable_grad():
            with torch.no_grad():
                clean = ctx.craft_predictor(x)
            for _ in range(self.steps):
                x_adv.requires_grad_(True)
                kl = output_kl(clean, ctx.craft_predictor(x_adv), ctx.output_mode)
                (grad,) = torch.autograd.grad(kl, x_adv)
                with torch.no_grad():
                    x_adv = threat.project(x, x_adv + self.alpha / 255.0 * (grad * region).sign(), region)
        return x_adv.detach()

    def batch_loss(self, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, *, seed: int) -> BatchLoss:
        x_adv = self.craft(ctx, images, seed)
        with ctx.autocast():
            clean_logits = ctx.predictor(images)
            clean = ctx.loss(clean_logits, targets)
            kl = output_kl(clean_logits, ctx.predictor(x_adv), ctx.output_mode)
        return BatchLoss(clean + self.beta * kl, {"clean": float(clean.detach()), "kl": float(kl.detach())})

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "eps_units": "1/255", "steps": self.steps, "alpha": self.alpha, "beta": self.beta}
