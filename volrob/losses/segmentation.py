"""Dice + cross-entropy losses for both output modes.

* ``dice_bce``: region outputs (B, 3, ...) with sigmoid; target is the float region mask (B, 3, ...).
* ``dice_ce``: label outputs (B, 4, ...) with softmax; target is the canonical class map (B, 1, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from volrob.losses.registry import LOSSES


class DiceBCELoss(nn.Module):
    """Soft Dice on sigmoid probabilities plus binary cross-entropy on logits, per region channel."""

    def __init__(self, *, lambda_dice: float = 1.0, lambda_bce: float = 1.0, smooth: float = 1e-5) -> None:
        super().__init__()
        self.dice = DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth)
        self.lambda_dice, self.lambda_bce = lambda_dice, lambda_bce

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return self.lambda_dice * self.dice(logits, target) + self.lambda_bce * bce


@LOSSES.register("dice_bce", description="Dice + BCE for sigmoid region outputs (TC, WT, ET)")
def build_dice_bce(**cfg: float) -> nn.Module:
    return DiceBCELoss(**cfg)


@LOSSES.register("dice_ce", description="Dice + CE for softmax label outputs (background, NCR, ED, ET)")
def build_dice_ce(*, lambda_dice: float = 1.0, lambda_ce: float = 1.0, smooth: float = 1e-5) -> nn.Module:
    return DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce,
                      smooth_nr=smooth, smooth_dr=smooth)
