"""Shared fixtures: a small synthetic BraTS-like dataset made once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip, saying why, where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synth_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 48^3 synthetic cases (train / val / test) and their manifest; treat as read-only."""
    from volrob.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, cases=6, shape=(48, 48, 48), seed=3, val_fraction=0.2, test_fraction=0.2)
    return root / "manifest.json"


@pytest.fixture(scope="session")
def tiny_checkpoint(synth_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny UNet trained for two epochs on ``synth_manifest`` (weights are poor; the plumbing is real)."""
    from volrob.training.config import TrainConfig
    from volrob.training.trainer import Trainer
    from volrob.utils.config import build_dataclass

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = build_dataclass(TrainConfig, {
        "seed": 1, "output_dir": str(out), "model": {"name": "unet", "preset": "tiny"},
        "data": {"manifest": str(synth_manifest)},
        "train": {"epochs": 2, "batch_size": 2, "crops_per_case": 2, "lr": 0.01, "val_every": 1},
        "inference": {"roi_size": [32, 32, 32], "overlap": 0.25, "sw_batch_size": 4},
    })
    return Trainer(cfg, progress=False).run().best_checkpoint


@pytest.fixture(scope="session")
def second_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with every floating weight jittered by 5 % (seeded): a different, related model."""
    from helpers.checkpoints import jittered_copy

    return jittered_copy(tiny_checkpoint, tmp_path_factory.mktemp("second") / "second.pt")


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test (tiny tensors: faster and immune to a busy machine); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
