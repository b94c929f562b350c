"""MI-FGSM (Dong et al., CVPR 2018): iterative FGSM with momentum, a standard booster of transfer attacks.

``g_{t+1} = decay * g_t + ∇ / ||∇||_1`` per sample (L1 over all voxels and channels of the masked gradient), then
``x <- project(x ± alpha * sign(g_{t+1}))`` (L∞) or a step along ``g_{t+1} / ||g_{t+1}||_2`` (L2). ``alpha``
defaults to ``eps / steps`` (1/255 units), ``decay`` to 1; no random start. The momentum starts at zero for every
sample, so a sample's result does not depend on the batch. With ``decay=0`` it is BIM with the same ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from volrob.attacks.base import RunContext
from volrob.attacks.loop import IterativeAttack
from volrob.attacks.losses import LossFn
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError


def check_decay(decay: Any) -> float:
    """``decay`` as a finite float ``>= 0``; anything else is a ConfigError."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not math.isfinite(decay) or decay < 0:
        raise ConfigError(f"attack: decay must be a finite number >= 0, got {decay!r}")
    return float(decay)


def momentum_update(momentum: torch.Tensor | None, grad: torch.Tensor, decay: float) -> torch.Tensor:
    """``decay * momentum + grad / ||grad||_1`` per sample (``momentum`` None at the first step)."""
    l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))
    step = grad / l1
    return step if momentum is None else decay * momentum + step


@register_attack("mifgsm", description="MI-FGSM: iterative FGSM with L1-normalised gradient momentum")
class MIFGSM(IterativeAttack):
    """MI-FGSM: iterative FGSM with L1-normalised gradient momentum."""

    alpha_factor = 1.0

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, steps: int = 10,
                 alpha: float | None = None, decay: float = 1.0, loss: str | LossFn = "auto", seed: int = 0) -> None:
        super().__init__(eps=eps, norm=norm, mask=mask, threat=threat, steps=steps, alpha=alpha,
                         random_start=False, loss=loss, seed=seed)
        self.decay = check_decay(decay)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "decay": self.decay}

    def transform_gradient(self, ctx: RunContext, grad: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        state["momentum"] = momentum_update(state.get("momentum"), grad, self.decay)
        return state["momentum"]
