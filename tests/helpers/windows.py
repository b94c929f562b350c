"""Independent window counts and tensors shared by the fast-path, GPU and benchmark tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data.utils import dense_patch_slices

from volrob.inference.predictor import Predictor


def monai_windows(shape: Sequence[int], roi: int, overlap: float = 0.5) -> int:
    """Windows of ``monai.inferers.sliding_window_inference``: the image padded up to the ROI, scan interval
    ``int(roi * (1 - overlap))`` (the whole ROI along an axis the ROI covers exactly), ``dense_patch_slices``."""
    padded = [max(int(s), roi) for s in shape]
    interval = [roi if s == roi else max(int(roi * (1 - overlap)), 1) for s in padded]
    return len(dense_patch_slices(padded, (roi,) * 3, interval))


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    """Uniform [0, 1) float32 numbers made on the CPU (so every device sees the same input)."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def output_and_grad(pred: Predictor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The predictor's logits on ``x`` and the input gradient of their mean sigmoid."""
    xg = x.clone().requires_grad_(True)
    out = pred(xg)
    (g,) = torch.autograd.grad(torch.sigmoid(out).mean(), xg)
    return out.detach(), g


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity in float64 on the CPU (tiny gradients stay above any epsilon)."""
    a, b = a.detach().double().flatten().cpu(), b.detach().double().flatten().cpu()
    return float(a @ b / (a.norm() * b.norm()))
