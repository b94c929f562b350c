"""Gaussian-noise baseline: ``x + N(0, σ²)`` with ``σ = eps / 255`` (each sample's own ``eps`` when it is per
sample) inside the threat model's region, projected to the threat set (so for L∞ the noise is also clipped to
``±eps/255``). The noise is drawn on CPU per sample from a generator seeded by ``seed`` (a sample gets the same
noise alone or in a batch), then moved to ``x``'s device.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from volrob.attacks.base import Attack, AttackResult
from volrob.attacks.loop import (
    build_threat,
    check_inputs,
    delta_norms,
    output_mode_of,
    per_sample_generator,
)
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel


@register_attack("gaussian_noise", description="Baseline: seeded Gaussian noise with sigma = eps / 255")
class GaussianNoise(Attack):
    """Baseline: seeded Gaussian noise with sigma = eps / 255."""

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, seed: int = 0) -> None:
        super().__init__(threat=build_threat(threat, eps, norm, mask), seed=seed)

    def params(self) -> dict[str, Any]:
        return {"sigma": self.per_sample_value(lambda: self.threat.eps), "sigma_units": "1/255"}

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The unprojected noise ``(B, C, *spatial)`` with std ``eps / 255`` (same standard draw for every sample,
        scaled by its own ``eps`` when per sample)."""
        draws = [torch.randn((1, *x.shape[1:]), generator=per_sample_generator(self.seed), dtype=torch.float64)
                 for _ in range(x.shape[0])]
        draw = torch.cat(draws)
        scale = self.threat.radii(draw) if self.threat.per_sample else self.threat.radius
        return (draw * scale).to(device=x.device, dtype=x.dtype)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """The noisy input: noise inside the threat model's region, projected to its threat set (needs no model)."""
        self.threat.check_batch(x.shape[0])
        x = x.detach()
        region = self.threat.region(x)
        return self.threat.project(x, x + self.noise(x) * region, region)

    def run(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> AttackResult:
        check_inputs(x, target, output_mode_of(predictor))
        t0 = time.perf_counter()
        x = x.detach()
        x_adv = self.perturb(x)
        record = {**self.describe(), "loss": [], **delta_norms(x, x_adv), "seconds": time.perf_counter() - t0}
        return AttackResult(x_adv, record)
