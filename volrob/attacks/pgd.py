"""PGD (Madry et al., 2018) in L∞ and L2: random start in the budget ball, ``steps`` projected gradient steps of
size ``alpha`` (default ``2.5 * eps / steps``, 1/255 units), and ``restarts`` independent runs of which each sample
keeps the one with the highest final loss.

The L∞ start is uniform in the cube; the L2 start is a uniformly random direction with radius ``eps * U^(1/n)``
(uniform in the ball). Starts are drawn per sample from a CPU generator seeded by ``(seed, restart)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from volrob.attacks.loop import IterativeAttack
from volrob.attacks.losses import LossFn
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel


@register_attack("pgd", description="Projected gradient descent with random start and restarts (L-inf or L2)")
class PGD(IterativeAttack):
    """Projected gradient descent with random start and restarts (L-inf or L2)."""

    alpha_factor = 2.5

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, steps: int = 20,
                 alpha: float | None = None, random_start: bool = True, restarts: int = 1, loss: str | LossFn = "auto",
                 seed: int = 0) -> None:
        super().__init__(eps=eps, norm=norm, mask=mask, threat=threat, steps=steps, alpha=alpha,
                         random_start=random_start, restarts=restarts, loss=loss, seed=seed)
