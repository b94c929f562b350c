"""Losses an attack maximises (untargeted) or minimises (targeted): injectable by name or as a callable.

``auto`` picks the training loss of the predictor's output mode (Dice+BCE for ``regions``, Dice+CE for ``labels``);
``bce`` and ``ce`` are the plain cross-entropies. Targets follow the output mode: ``regions`` -> float masks
``(B, 3, *spatial)``; ``labels`` -> canonical class maps ``(B, 1, *spatial)`` (long). A named loss checks that the
logits have the output mode's channel count, so the concatenated logits of an ensemble are never read as one model's.

Ensembles: :func:`member_mean` turns any objective ``fn(logits, target, *args)`` into the weighted mean of ``fn`` over
the members' logit blocks of an :class:`~volrob.inference.ensemble.EnsemblePredictor` (the mean of the members'
losses, not the loss of averaged logits); for any other predictor it returns ``fn`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from volrob import losses as training_losses
from volrob.data.labels import out_channels_for
from volrob.errors import ConfigError
from volrob.inference.ensemble import EnsemblePredictor

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
    fn: LossFn = _bce if name == "bce" else _ce if name == "ce" else training_losses.create(name)
    return _channel_checked(fn, output_mode)


def _channel_checked(fn: LossFn, output_mode: str) -> LossFn:
    """``fn`` preceded by a check that the logits have ``output_mode``'s channel count."""
    channels = out_channels_for(output_mode)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != channels:
            raise ConfigError(f"attack loss for {output_mode!r} outputs needs {channels} logit channels, got "
                              f"{logits.shape[1]} (an ensemble predictor needs an attack that supports ensembles)")
        return fn(logits, target)

    return loss


def member_mean(fn: Callable[..., torch.Tensor], predictor: Any) -> Callable[..., torch.Tensor]:
    """``fn`` for a single predictor; for an ensemble, ``(logits, target, *args) -> Σ_m w_m fn(logits_m, target,
    *args)`` over the members' logit blocks with the ensemble's normalised weights."""
    if not isinstance(predictor, EnsemblePredictor):
        return fn
    weights = predictor.weights

    def mean(logits: torch.Tensor, target: torch.Tensor, *args: Any) -> torch.Tensor:
        parts = predictor.split(logits)
        total = weights[0] * fn(parts[0], target, *args)
        for w, part in zip(weights[1:], parts[1:], strict=True):
            total = total + w * fn(part, target, *args)
        return total

    return mean
