"""A small finished study (every stage, synthetic 40³ cases, tiny models), run once for the report tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY = {"model.options": {}, "model.preset": "tiny", "inference.roi_size": [32, 32, 32], "train.epochs": 2,
        "train.val_every": 1, "train.amp": False}
FINE_TUNE = {"train.epochs": 1, "train.val_every": 1, "train.warmup_epochs": 0}


def small_study(checkpoint: Path) -> dict[str, Any]:
    """Every stage of a study, at the smallest size that still has two cases per paired test."""
    return {
        "name": "small", "seed": 0, "device": "cpu",
        "data": {"synth": {"cases": 5, "shape": [40, 40, 40], "val_fraction": 0.2, "test_fraction": 0.4}},
        "models": [{"name": "unet", "config": str(ROOT / "configs" / "unet.yaml"), "set": TINY},
                   {"name": "given", "checkpoint": str(checkpoint)}],
        "evaluate": {"split": "test"},
        "grid": {"split": "test", "attacks": [{"attack": "fgsm", "eps": [2, 8]},
                                              {"attack": "gaussian_noise", "eps": [8]}]},
        "transfer": {"split": "test", "attacks": [{"attack": "fgsm", "eps": [8]}],
                     "bands": {"edges": [0.0, 0.2, 1.0]}},
        "defend": [{"name": "unet_at", "source": "unet", "defence": {"name": "fgsm_rs", "options": {"eps": 4}},
                    "set": FINE_TUNE},
                   {"name": "unet_ft", "source": "unet", "defence": {"name": "none"}, "set": FINE_TUNE}],
        "compare": {"split": "test", "attacks": [{"attack": "fgsm", "eps": [4]}]},
    }


@pytest.fixture(scope="session")
def small_study_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of :func:`small_study` after ``volrob run`` (report included); treat as read-only."""
    from volrob.cli.main import main

    root = tmp_path_factory.mktemp("small_study")
    cfg = root / "study.yaml"
    cfg.write_text(yaml.safe_dump(small_study(tiny_checkpoint)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run", str(cfg), "-o", str(root / "out"), "--quiet", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "out"
