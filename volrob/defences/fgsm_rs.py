"""Fast adversarial training (Wong et al., 2020): FGSM from a uniform random start in ``[-eps, eps]``, one signed
step of ``alpha = 1.25 * eps`` (default), projected back to the ``eps`` ball and the valid range.

This is exactly volrob's ``pgd`` attack with one step (its L∞ random start is uniform in the cube, projected to the
threat set, and its step is ``project(x_adv + alpha * sign(grad))``), so that attack crafts the examples.
"""

from __future__ import annotations

from typing import Any

from volrob import attacks
from volrob.attacks.base import Attack
from volrob.defences.adversarial import AttackTraining
from volrob.defences.base import TrainContext
from volrob.defences.options import positive
from volrob.defences.registry import register_defence


@register_defence("fgsm_rs", description="FGSM adversarial training with random start (Wong et al. 2020)")
class FgsmRS(AttackTraining):
    """FGSM adversarial training with random start; ``clean_weight`` mixes in the clean loss."""

    def __init__(self, *, eps: float = 4.0, alpha: float | None = None, clean_weight: float = 0.0) -> None:
        super().__init__(clean_weight=clean_weight)
        self.eps = positive(self.name, "eps", eps)
        self.alpha = 1.25 * self.eps if alpha is None else positive(self.name, "alpha", alpha)

    def attack(self, ctx: TrainContext, seed: int) -> Attack:
        return attacks.create("pgd", eps=self.eps, norm="linf", steps=1, alpha=self.alpha, random_start=True,
                              loss=ctx.loss, seed=seed)

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "eps_units": "1/255", "alpha": self.alpha, **super().params()}
