"""BIM / iterative FGSM (Kurakin et al., 2017): ``steps`` signed-gradient steps of size ``alpha`` with projection
after each step, no random start.

Default ``alpha = 1.25 * eps / steps`` (1/255 units), so that the whole budget is reachable even when some steps
point back; Kurakin et al. used ``alpha = 1`` (i.e. 1/255) with ``steps = min(eps + 4, 1.25 eps)``, which this
default equals when ``steps = 1.25 eps``. Pass ``alpha=1`` to reproduce that setting exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from volrob.attacks.loop import IterativeAttack
from volrob.attacks.losses import LossFn
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel


@register_attack("bim", description="Basic iterative method (iterative FGSM), no random start")
class BIM(IterativeAttack):
    """Basic iterative method (iterative FGSM), no random start."""

    alpha_factor = 1.25

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, steps: int = 10,
                 alpha: float | None = None, loss: str | LossFn = "auto", seed: int = 0) -> None:
        super().__init__(eps=eps, norm=norm, mask=mask, threat=threat, steps=steps, alpha=alpha,
                         random_start=False, loss=loss, seed=seed)
