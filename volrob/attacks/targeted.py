"""Targeted iterative FGSM: signed-gradient *descent* of the loss between the prediction and a wanted output
(the ``target`` argument of ``run``), with projection after each step; no random start.

Options and step size as :mod:`volrob.attacks.bim` (default ``1.25 * eps / steps``, 1/255 units).
"""

from __future__ import annotations

from volrob.attacks.bim import BIM
from volrob.attacks.registry import register_attack


@register_attack("targeted_bim", description="Targeted iterative FGSM towards a wanted segmentation")
class TargetedBIM(BIM):
    """Targeted iterative FGSM towards a wanted segmentation."""

    targeted = True
