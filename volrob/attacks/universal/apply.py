"""A learned universal perturbation as an attack: the same ROI-sized ``delta`` tiled over every volume.

``create("universal", delta=TENSOR, eps=8)``: ``delta`` (C, *roi) comes from
:func:`~volrob.attacks.universal.learn.learn_universal`; the tiled delta acts inside the threat model's region and
the result is projected to the threat set (L∞ ball of each sample's ``eps`` and the valid range). The model is
never queried; the record names the perturbation by its sha256, shape and size, never by a file.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import torch

from volrob.attacks.base import Attack, AttackResult, StepCounter, StepProgress
from volrob.attacks.loop import build_threat, check_inputs, delta_norms, output_mode_of
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel
from volrob.attacks.universal.perturbation import check_delta, tile_delta
from volrob.errors import ConfigError


def delta_sha256(delta: torch.Tensor) -> str:
    """sha256 of a perturbation's float32 bytes (C order) and shape: its identity in records."""
    data = delta.detach().cpu().float().contiguous().numpy()
    return hashlib.sha256(repr(tuple(data.shape)).encode() + data.tobytes()).hexdigest()


@register_attack("universal", description="A learned universal perturbation tiled over the volume (no queries)",
                 family="universal")
class UniversalPerturbation(Attack):
    """A learned universal perturbation tiled over the volume (no queries)."""

    model_access = "none"

    norms = ("linf",)

    def __init__(self, *, delta: torch.Tensor, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, seed: int = 0) -> None:
        super().__init__(threat=build_threat(threat, eps, norm, mask), seed=seed)
        if self.threat.norm != "linf":
            raise ConfigError("attack universal: the budget of a universal perturbation is L-inf")
        check_delta(delta)
        self.delta = delta.detach().cpu().float().clone()
        self.delta_sha256 = delta_sha256(self.delta)

    def params(self) -> dict[str, Any]:
        return {"delta_sha256": self.delta_sha256, "delta_shape": list(self.delta.shape),
                "linf_255": float(self.delta.abs().max()) * 255.0}

    def progress_total(self, batch: int) -> int:
        """No iterations: the whole call is one unit."""
        return 1

    def run(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
            progress: StepProgress | None = None) -> AttackResult:
        check_inputs(x, target, output_mode_of(predictor))
        if self.delta.shape[0] != x.shape[1]:
            raise ConfigError(f"attack universal: delta has {self.delta.shape[0]} channels, x has {x.shape[1]}")
        self.threat.check_batch(x.shape[0])
        counter = StepCounter(self.progress_total(x.shape[0]), progress)
        t0 = time.perf_counter()
        x = x.detach()
        tiled = tile_delta(self.delta.to(device=x.device, dtype=x.dtype), x.shape[2:])[None]
        region = self.threat.region(x)
        x_adv = self.threat.project(x, x + tiled * region, region)
        counter.advance()
        record = {**self.describe(), "loss": [], **delta_norms(x, x_adv), "seconds": time.perf_counter() - t0}
        return AttackResult(x_adv, record)
