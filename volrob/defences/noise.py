"""Gaussian-noise augmentation (baseline): train on ``clip(x + N(0, (sigma/255)^2), 0, 1)`` with the noise only
inside the brain (voxels non-zero in some channel), so the zero background stays zero.

volrob's ``gaussian_noise`` attack is not reused: it projects the noise to its L∞ ball (``|noise| <= sigma``),
which would truncate the Gaussian. The noise needs no gradient, so nothing is crafted under the network.
"""

from __future__ import annotations

from typing import Any

import torch

from volrob.attacks.loop import per_sample_generator
from volrob.defences.base import BatchLoss, Defence, TrainContext
from volrob.defences.options import mixed, positive, unit_interval
from volrob.defences.registry import register_defence


@register_defence("noise", description="Gaussian-noise augmentation baseline")
class NoiseAugmentation(Defence):
    """Gaussian-noise augmentation with std ``sigma`` (1/255 units) inside the brain; ``clean_weight`` mixes in
    the clean loss."""

    def __init__(self, *, sigma: float = 8.0, clean_weight: float = 0.0) -> None:
        self.sigma = positive(self.name, "sigma", sigma)
        self.clean_weight = unit_interval(self.name, "clean_weight", clean_weight)

    def perturb(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """The noisy batch (one draw for the whole batch from a CPU generator seeded by ``seed``)."""
        draw = torch.randn(images.shape, generator=per_sample_generator(seed), dtype=torch.float64)
        noise = (draw * (self.sigma / 255.0)).to(device=images.device, dtype=images.dtype)
        brain = (images != 0).any(dim=1, keepdim=True).to(images.dtype)
        return (images + noise * brain).clamp(0.0, 1.0).detach()

    def batch_loss(self, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, *, seed: int) -> BatchLoss:
        noisy = self.perturb(images, seed)
        with ctx.autocast():
            noisy_loss = ctx.loss(ctx.predictor(noisy), targets)
            clean = ctx.loss(ctx.predictor(images), targets) if self.clean_weight > 0 else None
        parts = {"noisy": float(noisy_loss.detach())}
        if clean is not None:
            parts["clean"] = float(clean.detach())
        return BatchLoss(mixed(self.clean_weight, clean, noisy_loss), parts)

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "sigma_units": "1/255", "clean_weight": self.clean_weight}
