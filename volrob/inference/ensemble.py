"""An ensemble surrogate for transfer attacks: several predictors attacked through the mean of their losses.

``EnsemblePredictor(members, weights)`` returns the members' logits concatenated along the channel axis, so an
attack ascends ``Σ_m w_m L(member_m(x), target)`` (weights normalised to sum 1): the mean of the members' losses,
not the loss of averaged logits, which lets a confident member dominate. The split is done by the attack engine
(:func:`volrob.attacks.losses.member_mean`); attacks built on the shared loop (FGSM, BIM, PGD, MI-FGSM, DI,
SegPGD, CosPGD) support it, those with their own objective reject it with a ConfigError. Each member is a full
predictor with its own normalisation and sliding-window settings; all must share ``output_mode`` and input channels.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn

from volrob.errors import ConfigError


def _input_channels(member: nn.Module) -> int | None:
    """Input channels a member expects (a predictor's ``in_channels``), or None when it does not say."""
    channels = getattr(member, "in_channels", None)
    return int(channels) if isinstance(channels, int) else None


def _normalised_weights(weights: Sequence[float] | None, count: int) -> tuple[float, ...]:
    if weights is None:
        return (1.0 / count,) * count
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise ConfigError(f"ensemble: weights must be a sequence of numbers, got {type(weights).__name__}")
    if len(weights) != count:
        raise ConfigError(f"ensemble: weights need one entry per member ({count}), got {len(weights)}")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"ensemble: weights[{i}] must be a finite number >= 0, got {w!r}")
    total = float(sum(weights))
    if not total > 0:
        raise ConfigError("ensemble: weights must not all be zero")
    return tuple(float(w) / total for w in weights)


class EnsemblePredictor(nn.Module):
    """``x -> cat([member(x) for member in members], dim=1)``; ``weights`` (default equal) are normalised."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if isinstance(members, (nn.Module, str, bytes)) or not isinstance(members, Sequence) or not members:
            raise ConfigError("ensemble: members must be a non-empty sequence of predictors")
        for i, m in enumerate(members):
            if not isinstance(m, nn.Module) or isinstance(m, EnsemblePredictor):
                raise ConfigError(f"ensemble: members[{i}] must be a predictor (not an ensemble), "
                                  f"got {type(m).__name__}")
        modes = [getattr(m, "output_mode", None) for m in members]
        if any(mode is None for mode in modes) or len(set(modes)) != 1:
            raise ConfigError(f"ensemble: members must share one output_mode, got {modes}")
        channels = [_input_channels(m) for m in members]
        if len(set(channels)) != 1:
            raise ConfigError(f"ensemble: members must take the same input channels, got {channels}")
        self.members = nn.ModuleList(members)
        self.output_mode: str = str(modes[0])
        self.weights = _normalised_weights(weights, len(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [member(x) for member in self.members]
        widths = {int(o.shape[1]) for o in outs}
        if len(widths) != 1:
            raise ConfigError(f"ensemble: members must give the same number of output channels, got "
                              f"{[int(o.shape[1]) for o in outs]}")
        return torch.cat(outs, dim=1)

    def split(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The members' logit blocks of a :meth:`forward` output."""
        count = len(self.members)
        if logits.ndim < 2 or logits.shape[1] % count:
            raise ConfigError(f"ensemble: logits with {list(logits.shape)} cannot be split over {count} members")
        return tuple(torch.chunk(logits, count, dim=1))


def reject_ensemble(predictor: nn.Module, attack: str) -> None:
    """ConfigError when ``predictor`` is an ensemble (for attacks whose objective does not average over members)."""
    if isinstance(predictor, EnsemblePredictor):
        raise ConfigError(f"{attack}: ensemble predictors are not supported (use a pixel attack such as pgd, "
                          f"mifgsm or di_mifgsm)")
