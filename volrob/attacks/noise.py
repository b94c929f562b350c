"""Gaussian-noise baseline: ``x + N(0, σ²)`` with ``σ = eps / 255`` (each sample's own ``eps`` when it is per
sample) inside the threat model's region, projected to the threat set (so for L∞ the noise is also clipped to
``±eps/255``). The noise is drawn on CPU per sample from a generator seeded by ``seed`` (a sample gets the same
noise alone or in a batch), then moved to ``x``'s device. Progress: the call is one unit, ``progress(1, 1)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from volrob.attacks.base import Attack, AttackResult, StepCounter, StepProgress
from volrob.attacks.loop import (
    build_threat,
    check_inputs,
    delta_norms,
    output_mode_of,
    per_sample_generator,
)
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError


@register_attack("gaussian_noise", description="Baseline: seeded Gaussian noise with sigma = eps / 255")
class GaussianNoise(Attack):
    """Baseline: seeded Gaussian noise with sigma = eps / 255."""

    model_access = "none"

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, seed: int = 0) -> None:
        super().__init__(threat=build_threat(threat, eps, norm, mask), seed=seed)

    def params(self) -> dict[str, Any]:
        return {"sigma": self.per_sample_value(lambda threat: threat.eps), "sigma_units": "1/255"}

    def progress_total(self, batch: int) -> int:
        """No iterations: the whole call is one unit."""
        return 1

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

    def run(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
            progress: StepProgress | None = None) -> AttackResult:
        check_inputs(x, target, output_mode_of(predictor))
        counter = StepCounter(self.progress_total(x.shape[0]), progress)
        t0 = time.perf_counter()
        x = x.detach()
        x_adv = self.perturb(x)
        counter.advance()
        record = {**self.describe(), "loss": [], **delta_norms(x, x_adv), "seconds": time.perf_counter() - t0}
        return AttackResult(x_adv, record)


@register_attack("sign_noise", description="Control: uniform random signs of size eps / 255 (a corner of the ball)")
class SignNoise(GaussianNoise):
    """Control: uniform random signs of size eps / 255 (a corner of the L∞ ball), seeded, inside the region.

    The budget-matched control of a universal or sign-gradient perturbation: same L∞ size, random direction.
    """

    norms = ("linf",)

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, seed: int = 0) -> None:
        super().__init__(eps=eps, norm=norm, mask=mask, threat=threat, seed=seed)
        if self.threat.norm != "linf":
            raise ConfigError("attack sign_noise: random signs are a corner of the L-inf ball; use norm linf")

    def params(self) -> dict[str, Any]:
        return {"amplitude": self.per_sample_value(lambda threat: threat.eps), "amplitude_units": "1/255"}

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """``±eps / 255`` per voxel, signs drawn on CPU (the same draw for every sample, scaled by its budget)."""
        draws = [torch.randint(0, 2, (1, *x.shape[1:]), generator=per_sample_generator(self.seed)).to(torch.float64)
                 * 2 - 1 for _ in range(x.shape[0])]
        draw = torch.cat(draws)
        scale = self.threat.radii(draw) if self.threat.per_sample else self.threat.radius
        return (draw * scale).to(device=x.device, dtype=x.dtype)
