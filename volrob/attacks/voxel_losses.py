"""Per-voxel losses and weights for SegPGD, CosPGD (and ASMA-style attacks), for both output modes.

Shapes: ``regions`` mode gives per-element maps ``(B, 3, *spatial)`` (binary cross-entropy per region channel);
``labels`` mode gives ``(B, 1, *spatial)`` (cross-entropy over the classes). Targets follow
:mod:`volrob.attacks.losses`: float region masks ``(B, 3, *spatial)`` or class maps ``(B, 1, *spatial)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from volrob.errors import ConfigError


def _check_mode(mode: str) -> None:
    if mode not in ("regions", "labels"):
        raise ConfigError(f"voxel loss: output mode must be 'regions' or 'labels', got {mode!r}")


def voxel_loss(logits: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    """Unreduced BCE (``regions``) or CE (``labels``) per voxel."""
    _check_mode(mode)
    if mode == "regions":
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, target[:, 0].long(), reduction="none").unsqueeze(1)


def voxel_correct(logits: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    """Boolean map, same shape as :func:`voxel_loss`: is this voxel (region channel) predicted correctly?"""
    _check_mode(mode)
    if mode == "regions":
        return (logits > 0) == (target > 0.5)
    return (logits.argmax(1) == target[:, 0].long()).unsqueeze(1)


def segpgd_lambda(step: int, steps: int) -> float:
    """SegPGD weight of the wrongly classified voxels at step ``t`` of ``T``: ``λ_t = t / (2T)``."""
    if steps < 1:
        raise ConfigError(f"segpgd: steps must be >= 1, got {steps}")
    return step / (2.0 * steps)


def segpgd_loss(logits: torch.Tensor, target: torch.Tensor, mode: str, lam: float) -> torch.Tensor:
    """Per-sample SegPGD loss ``((1-λ) Σ_correct L + λ Σ_wrong L) / N`` (``N`` = all elements of the sample)."""
    loss = voxel_loss(logits, target, mode)
    correct = voxel_correct(logits, target, mode).detach().to(loss.dtype)
    weighted = ((1.0 - lam) * correct + lam * (1.0 - correct)) * loss
    return weighted.flatten(1).mean(1)


def cosine_weights(logits: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    """Detached cosine similarity between predicted probabilities and the one-hot target, per voxel.

    ``labels``: softmax over classes vs one-hot class, shape ``(B, 1, *spatial)``. ``regions``: each sigmoid
    channel read as the two-class distribution ``(1-p, p)`` vs one-hot ``(1-y, y)``, shape ``(B, 3, *spatial)``.
    """
    _check_mode(mode)
    with torch.no_grad():
        if mode == "regions":
            p = torch.sigmoid(logits)
            y = target.to(logits.dtype)
            dot = (1 - p) * (1 - y) + p * y
            return dot / torch.sqrt((1 - p) ** 2 + p ** 2).clamp_min(1e-12) / torch.sqrt((1 - y) ** 2 + y ** 2)
        prob = torch.softmax(logits, dim=1)
        onehot = F.one_hot(target[:, 0].long(), logits.shape[1]).movedim(-1, 1).to(logits.dtype)
        return F.cosine_similarity(prob, onehot, dim=1, eps=1e-12).unsqueeze(1)


def cospgd_loss(logits: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-sample CosPGD loss: mean over elements of ``cos(prob, onehot).detach() * L``."""
    return (cosine_weights(logits, target, mode) * voxel_loss(logits, target, mode)).flatten(1).mean(1)
