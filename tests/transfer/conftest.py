"""Transfer fixtures: two different tiny checkpoints (the session's trained one and a weight-perturbed copy)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from volrob.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="session")
def second_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with every floating weight jittered by 5 % (seeded): a different, related model."""
    ckpt = load_checkpoint(tiny_checkpoint)
    g = torch.Generator().manual_seed(7)
    state = {k: (v * (1 + 0.05 * torch.randn(v.shape, generator=g)) if v.is_floating_point() else v)
             for k, v in ckpt.state_dict.items()}
    path = tmp_path_factory.mktemp("second") / "second.pt"
    save_checkpoint(dataclasses.replace(ckpt, state_dict=state, training_state=None), path)
    return path


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here runs with one intra-op thread (see the root conftest)."""
