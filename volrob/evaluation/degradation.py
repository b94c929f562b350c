"""How much worse a score got under attack, with the sign fixed per metric (positive = worse)."""

from __future__ import annotations

HIGHER_IS_BETTER = {"dice": True, "nsd": True, "hd95": False, "hd95_brats": False, "lesion_dice": True,
                    "lesion_hd95": False}


def degradation(metric: str, clean: float, adversarial: float) -> tuple[float, float]:
    """How much worse the adversarial score is (positive = worse) and that as a share of the clean score.

    Dice and NSD (and lesion-wise Dice): ``clean - adversarial``; HD95 (either definition, and lesion-wise):
    ``adversarial - clean``. The share is 0 where the clean score is 0 (nothing to lose, or a perfect HD95 of 0 mm).
    """
    drop = clean - adversarial if HIGHER_IS_BETTER[metric] else adversarial - clean
    return drop, (drop / clean if clean > 0 else 0.0)
