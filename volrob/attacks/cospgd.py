"""CosPGD (Agnihotri et al., ICML 2024): PGD whose per-voxel loss is weighted by the detached cosine similarity
between the predicted probabilities and the one-hot target, so voxels already fooled contribute little.
Per-voxel loss and weights: :mod:`volrob.attacks.voxel_losses` (fixed: no ``loss`` option).
Other options as :mod:`volrob.attacks.pgd`.
"""

from __future__ import annotations

from typing import Any

import torch

from volrob.attacks.loop import IterativeAttack
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel
from volrob.attacks.voxel_losses import cospgd_loss


@register_attack("cospgd", description="CosPGD: per-voxel loss weighted by cosine similarity to the target")
class CosPGD(IterativeAttack):
    """CosPGD: per-voxel loss weighted by cosine similarity to the target."""

    alpha_factor = 2.5

    def __init__(self, *, eps: float | None = None, norm: str | None = None, mask: str | None = None,
                 threat: ThreatModel | None = None, steps: int = 20, alpha: float | None = None,
                 random_start: bool = True, restarts: int = 1, seed: int = 0) -> None:
        super().__init__(eps=eps, norm=norm, mask=mask, threat=threat, steps=steps, alpha=alpha,
                         random_start=random_start, restarts=restarts, seed=seed)

    def prepare(self, output_mode: str) -> None:
        self._mode = output_mode

    def params(self) -> dict[str, Any]:
        return {**super().params(), "loss": "cospgd"}

    def objective(self, logits: torch.Tensor, target: torch.Tensor, step: int) -> torch.Tensor:
        return cospgd_loss(logits, target, self._mode)
