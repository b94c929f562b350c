"""Input diversity (DI, Xie et al., CVPR 2019) generalised to 3D, combined with momentum: M-DI2-FGSM ("di_mifgsm").

With probability ``diversity_prob`` each gradient step evaluates the model on a randomly transformed input: every
spatial axis of size ``n`` is resized (trilinear) to ``round(n * s)`` with ``s`` uniform in ``[1, diversity_scale]``
per axis, then cropped back to ``n`` at a random offset. The 2D original pads a resized image and relies on a
position-free class label; a segmentation target is a voxel map, so here the **same** resize and crop are applied
to the target (nearest neighbour: masks and class maps stay binary / integer) and the loss compares the transformed
prediction with the transformed target. Mapping the logits back instead would need the inverse of the crop, which
has lost the border voxels. Keeping the original size also keeps the predictor's window layout unchanged. The
gradient flows through the resize to the input. Draws come from a CPU generator seeded by ``(seed, restart)``, fresh
for every sample. Other options as :mod:`volrob.attacks.mifgsm`; ``diversity_prob=0`` gives MI-FGSM exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from volrob.attacks.base import RunContext
from volrob.attacks.loop import per_sample_generator
from volrob.attacks.losses import LossFn
from volrob.attacks.mifgsm import MIFGSM
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError


def draw_transform(spatial: Sequence[int], scale: float,
                   gen: torch.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Resized sizes and crop offsets for one transform: per axis ``round(n * U[1, scale])`` and an offset in
    ``[0, resized - n]``."""
    factors = 1.0 + torch.rand(len(spatial), generator=gen, dtype=torch.float64) * (scale - 1.0)
    sizes = tuple(max(int(n), round(int(n) * float(f))) for n, f in zip(spatial, factors, strict=True))
    offsets = tuple(int(torch.randint(0, s - int(n) + 1, (), generator=gen)) for n, s in zip(spatial, sizes,
                                                                                               strict=True))
    return sizes, offsets


def resize_crop(t: torch.Tensor, sizes: Sequence[int], offsets: Sequence[int], mode: str) -> torch.Tensor:
    """``t`` (B, C, *spatial) resized to ``sizes`` (``trilinear`` or ``nearest``) and cropped back to its spatial
    shape at ``offsets``; integer and boolean tensors keep their dtype (use ``nearest`` for them)."""
    spatial = t.shape[2:]
    src = t if t.is_floating_point() else t.to(torch.float32)
    kwargs: dict[str, Any] = {"align_corners": False} if mode == "trilinear" else {}
    out = F.interpolate(src, size=tuple(sizes), mode=mode, **kwargs)
    index = tuple(slice(o, o + int(n)) for o, n in zip(offsets, spatial, strict=True))
    out = out[(slice(None), slice(None), *index)]
    return out if t.is_floating_point() else out.to(t.dtype)


def diverse_pair(x: torch.Tensor, target: torch.Tensor, sizes: Sequence[int], offsets: Sequence[int],
                 mode: str = "trilinear") -> tuple[torch.Tensor, torch.Tensor]:
    """The same resize-and-crop applied to the input (``mode``) and to the target (nearest)."""
    return resize_crop(x, sizes, offsets, mode), resize_crop(target, sizes, offsets, "nearest")


def _check_prob(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"attack: diversity_prob must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_scale(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1:
        raise ConfigError(f"attack: diversity_scale must be a finite number >= 1, got {value!r}")
    return float(value)


@register_attack("di_mifgsm", description="M-DI2-FGSM: MI-FGSM with 3D input diversity (random resize and crop)")
class DIMIFGSM(MIFGSM):
    """M-DI2-FGSM: MI-FGSM with 3D input diversity (random resize and crop)."""

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, steps: int = 10,
                 alpha: float | None = None, decay: float = 1.0, diversity_prob: float = 0.5,
                 diversity_scale: float = 1.1, loss: str | LossFn = "auto", seed: int = 0) -> None:
        super().__init__(eps=eps, norm=norm, mask=mask, threat=threat, steps=steps, alpha=alpha, decay=decay,
                         loss=loss, seed=seed)
        self.diversity_prob = _check_prob(diversity_prob)
        self.diversity_scale = _check_scale(diversity_scale)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "diversity_prob": self.diversity_prob, "diversity_scale": self.diversity_scale}

    def transform_input(self, ctx: RunContext, x_adv: torch.Tensor, target: torch.Tensor,
                        state: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.diversity_prob == 0:
            return x_adv, target
        if "gen" not in state:
            state["gen"] = per_sample_generator(self.seed * 1000003 + 500009 + state["restart"])
        gen = state["gen"]
        if float(torch.rand((), generator=gen, dtype=torch.float64)) >= self.diversity_prob:
            return x_adv, target
        sizes, offsets = draw_transform(x_adv.shape[2:], self.diversity_scale, gen)
        return diverse_pair(x_adv, target, sizes, offsets)
