"""``volrob inspect`` on tiny checkpoints made here (with and without a defence record); ``volrob models`` lists
the defences."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from volrob import defences, models
from volrob.checkpoint import Checkpoint, save_checkpoint
from volrob.cli.main import main
from volrob.data.preprocess import PreprocessConfig
from volrob.inference.predictor import SlidingWindowConfig

CFG = {"in_channels": 4, "out_channels": 3, "roi_size": [16, 16, 16], "preset": "tiny"}
FIELDS = ("model", "model_config", "parameters", "output_mode", "modalities", "label_convention", "preprocessing",
          "normalisation", "sliding_window", "defence", "init_from", "epochs", "best_epoch", "val_dice", "seed",
          "manifest_sha256", "file", "sha256", "size_bytes")


def _save(path: Path, **provenance: Any) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net = models.create("unet", **CFG)
    prov = {"seed": 7, "manifest_sha256": "cd" * 32, "epochs": 5, "best_epoch": 4,
            "val_dice": {"TC": 0.5, "WT": 0.625, "ET": 0.25, "mean": 0.4583}, **provenance}
    ckpt = Checkpoint(model_name="unet", model_config=dict(CFG), state_dict=net.state_dict(),
                      preprocessing=PreprocessConfig(), normalisation={"mean": [0.1] * 4, "std": [0.9] * 4},
                      label_convention="brats2021", output_mode="regions", modalities=["t1", "t1ce", "t2", "flair"],
                      inference=SlidingWindowConfig(roi_size=(16, 16, 16), overlap=0.25), provenance=prov)
    return save_checkpoint(ckpt, path), net


def _json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_with_defence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init = {"path": "runs/x/best.pt", "sha256": "ef" * 32}
    path, net = _save(tmp_path / "robust.pt", defence={"name": "pgd_at", "params": {"eps": 4, "steps": 3}},
                      init_from=init)
    info = _json(path, capsys)
    assert tuple(info) == FIELDS
    assert info["defence"] == {"name": "pgd_at", "params": {"eps": 4, "steps": 3}} and info["init_from"] == init
    assert info["parameters"] == sum(p.numel() for p in net.parameters())
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["size_bytes"] == path.stat().st_size
    assert (info["epochs"], info["best_epoch"], info["seed"]) == (5, 4, 7)
    assert info["val_dice"]["WT"] == 0.625 and info["manifest_sha256"] == "cd" * 32
    assert info["model_config"] == CFG and info["sliding_window"]["roi_size"] == [16, 16, 16]
    assert info["normalisation"] == {"mean": [0.1] * 4, "std": [0.9] * 4}

    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    for name in FIELDS:
        assert f"\n{name}:" in "\n" + text
    assert "pgd_at (eps=4, steps=3)" in text and f"{info['parameters']:,}" in text and info["sha256"] in text
    assert "WT=0.6250" in text and "t1ce" in text and "brats2021" in text


@pytest.mark.parametrize("defence", [None, {"name": "none", "params": {}}])
def test_inspect_undefended(defence: dict[str, Any] | None, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    extra = {} if defence is None else {"defence": defence}
    path, _ = _save(tmp_path / "clean.pt", **extra)
    info = _json(path, capsys)
    assert info["defence"] == {"name": "none", "params": {}} and info["init_from"] is None
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("defence:")] == ["none"]
    assert [line.split()[1] for line in lines if line.startswith("init_from:")] == ["-"]


@pytest.mark.parametrize("content", [None, b"not a checkpoint", b"PK\x03\x04truncated"])
def test_inspect_bad_file_exits_2_with_one_line(content: bytes | None, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    assert main(["inspect", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("volrob inspect: error:") and str(path) in captured.err


def test_models_lists_defences(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data["defences"]] == defences.available()
    assert all(d["description"] for d in data["defences"]) and "unet" in [m["name"] for m in data["models"]]
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("defence"))
    assert [line.split()[0] for line in lines[start + 1:]] == defences.available()
