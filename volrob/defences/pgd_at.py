"""PGD adversarial training (Madry et al., 2018): every batch is replaced by (or mixed with) PGD examples that
maximise the training loss within an ``eps`` ball (1/255 units, brain voxels only, valid range kept)."""

from __future__ import annotations

from typing import Any

from volrob import attacks
from volrob.attacks.base import Attack
from volrob.attacks.threat import NORMS
from volrob.defences.adversarial import AttackTraining
from volrob.defences.base import TrainContext
from volrob.defences.options import count, flag, positive
from volrob.defences.registry import register_defence
from volrob.errors import ConfigError


@register_defence("pgd_at", description="PGD adversarial training (Madry et al. 2018)")
class PgdAT(AttackTraining):
    """PGD adversarial training: ``steps`` signed steps of size ``alpha`` (default ``2.5 * eps / steps``) from a
    random start, maximising the training loss; ``clean_weight`` mixes in the clean loss."""

    def __init__(self, *, eps: float = 4.0, steps: int = 3, alpha: float | None = None, norm: str = "linf",
                 random_start: bool = True, clean_weight: float = 0.0) -> None:
        super().__init__(clean_weight=clean_weight)
        self.eps = positive(self.name, "eps", eps)
        self.steps = count(self.name, "steps", steps)
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else positive(self.name, "alpha", alpha)
        if norm not in NORMS:
            raise ConfigError(f"defence {self.name}: norm must be one of {list(NORMS)}, got {norm!r}")
        self.norm = norm
        self.random_start = flag(self.name, "random_start", random_start)

    def attack(self, ctx: TrainContext, seed: int) -> Attack:
        return attacks.create("pgd", eps=self.eps, norm=self.norm, steps=self.steps, alpha=self.alpha,
                              random_start=self.random_start, loss=ctx.loss, seed=seed)

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "eps_units": "1/255", "steps": self.steps, "alpha": self.alpha, "norm": self.norm,
                "random_start": self.random_start, **super().params()}
