"""FGSM (Goodfellow et al., 2015): one step of size ``eps`` along the sign of the input gradient (L∞), or along
the gradient divided by its L2 norm (L2), then projection to the threat set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from volrob.attacks.loop import IterativeAttack
from volrob.attacks.losses import LossFn
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel


@register_attack("fgsm", description="Fast gradient sign method: one step of size eps")
class FGSM(IterativeAttack):
    """Fast gradient sign method: one step of size eps."""

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, loss: str | LossFn = "auto",
                 seed: int = 0) -> None:
        super().__init__(eps=eps, norm=norm, mask=mask, threat=threat, steps=1, loss=loss, seed=seed)

    def alpha_for(self, threat: ThreatModel) -> float:
        """The step is the whole budget: ``eps`` (1/255 units)."""
        return threat.eps  # type: ignore[return-value]

    def params(self) -> dict[str, Any]:
        out = super().params()
        return {"steps": 1, "alpha": out["alpha"], "alpha_units": "1/255", "loss": out["loss"]}
