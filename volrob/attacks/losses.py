"""Losses an attack maximises (untargeted) or minimises (targeted): injectable by name or as a callable.

``auto`` picks the training loss of the predictor's output mode (Dice+BCE for ``regions``, Dice+CE for ``labels``);
``bce`` and ``ce`` are the plain cross-entropies. Targets follow the output mode: ``regions`` -> float masks
``(B, 3, *spatial)``; ``labels`` -> canonical class maps ``(B, 1, *spatial)`` (long).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from volrob import losses as training_losses
from volrob.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ATTACK_LOSSES: tuple[str, ...] = ("auto", "dice_bce", "dice_ce", "bce", "ce")


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def _ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target[:, 0].long())


def resolve_loss(loss: str | LossFn, output_mode: str) -> LossFn:
    """A ``(logits, target) -> scalar`` loss for ``output_mode``; mismatched choices are ConfigErrors."""
    if callable(loss):
        return loss
    if loss not in ATTACK_LOSSES:
        raise ConfigError(f"attack loss must be one of {list(ATTACK_LOSSES)} or a callable, got {loss!r}")
    name = training_losses.default_for(output_mode) if loss == "auto" else loss
    wants = {"dice_bce": "regions", "bce": "regions", "dice_ce": "labels", "ce": "labels"}[name]
    if wants != output_mode:
        raise ConfigError(f"attack loss {name!r} needs {wants!r} outputs, the predictor gives {output_mode!r}")
    if name == "bce":
        return _bce
    if name == "ce":
        return _ce
    return training_losses.create(name)
