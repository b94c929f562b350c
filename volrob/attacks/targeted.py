"""Targeted iterative FGSM: signed-gradient *descent* of the loss between the prediction and a wanted output
(the ``target`` argument of ``run``), with projection after each step; no random start.

Step size as in :mod:`volrob.attacks.bim` (default ``1.25 * eps / steps``, 1/255 units).
"""

from __future__ import annotations

from volrob.attacks.loop import IterativeAttack
from volrob.attacks.losses import LossFn
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel


@register_attack("targeted_bim", description="Targeted iterative FGSM towards a wanted segmentation")
class TargetedBIM(IterativeAttack):
    """Targeted iterative FGSM towards a wanted segmentation."""

    targeted = True
    alpha_factor = 1.25

    def __init__(self, *, eps: float | None = None, norm: str | None = None, mask: str | None = None,
                 threat: ThreatModel | None = None, steps: int = 10, alpha: float | None = None,
                 loss: str | LossFn = "auto", seed: int = 0) -> None:
        super().__init__(eps=eps, norm=norm, mask=mask, threat=threat, steps=steps, alpha=alpha,
                         random_start=False, loss=loss, seed=seed)
