"""Checkpoints made from other checkpoints for tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from volrob.checkpoint import load_checkpoint, save_checkpoint


def jittered_copy(source: Path, target: Path, *, scale: float = 0.05, seed: int = 7) -> Path:
    """``source`` with every floating weight multiplied by ``1 + scale * N(0, 1)`` (seeded): a related model."""
    ckpt = load_checkpoint(source)
    g = torch.Generator().manual_seed(seed)
    state = {k: (v * (1 + scale * torch.randn(v.shape, generator=g)) if v.is_floating_point() else v)
             for k, v in ckpt.state_dict.items()}
    save_checkpoint(dataclasses.replace(ckpt, state_dict=state, training_state=None), target)
    return target
