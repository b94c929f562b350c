"""Training on synthetic data: the loss falls, the same seed gives the same weights, resume equals one run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from volrob.checkpoint import load_checkpoint
from volrob.errors import ConfigError
from volrob.training.config import TrainConfig, load_train_config
from volrob.training.trainer import Trainer
from volrob.utils.config import build_dataclass


def tiny_config(manifest: Path, out: Path, **train: object) -> TrainConfig:
    data = {
        "seed": 7,
        "output_dir": str(out),
        "model": {"name": "unet", "preset": "tiny"},
        "data": {"manifest": str(manifest)},
        "train": {"epochs": 3, "batch_size": 2, "crops_per_case": 2, "lr": 0.01, "val_every": 1, "warmup_epochs": 0,
                  **train},
        "inference": {"roi_size": [32, 32, 32], "overlap": 0.25, "sw_batch_size": 4},
    }
    return build_dataclass(TrainConfig, data)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def test_loss_decreases_and_files_written(synth_manifest: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synth_manifest, tmp_path / "run", epochs=8)
    res = Trainer(cfg, progress=False).run()
    log = pd.read_csv(res.log)
    assert list(log["epoch"]) == list(range(1, 9))
    assert log["train_loss"].iloc[-2:].mean() < log["train_loss"].iloc[:2].mean()
    assert log["val_dice_mean"].notna().all() and log["val_dice_mean"].between(0, 1).all()
    assert (tmp_path / "run" / "config.json").is_file()
    best = load_checkpoint(res.best_checkpoint, expect_model="unet")
    assert best.provenance["seed"] == 7 and len(best.provenance["manifest_sha256"]) == 64
    assert best.provenance["best_epoch"] == res.best_epoch
    assert best.training_state is None
    assert load_checkpoint(res.last_checkpoint).training_state["epoch"] == 8


def test_same_seed_same_weights(synth_manifest: Path, tmp_path: Path) -> None:
    a = Trainer(tiny_config(synth_manifest, tmp_path / "a", epochs=2), progress=False).run()
    b = Trainer(tiny_config(synth_manifest, tmp_path / "b", epochs=2), progress=False).run()
    wa, wb = weights(a.last_checkpoint), weights(b.last_checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert pd.read_csv(a.log).drop(columns="seconds").equals(pd.read_csv(b.log).drop(columns="seconds"))


def test_resume_equals_uninterrupted(synth_manifest: Path, tmp_path: Path) -> None:
    full = Trainer(tiny_config(synth_manifest, tmp_path / "full", epochs=3), progress=False).run()
    part_cfg = tiny_config(synth_manifest, tmp_path / "part", epochs=3)
    Trainer(part_cfg, progress=False).run(stop_after=2)
    assert load_checkpoint(tmp_path / "part" / "last.pt").training_state["epoch"] == 2
    resumed = Trainer(part_cfg, progress=False).run(resume=True)
    wf, wr = weights(full.last_checkpoint), weights(resumed.last_checkpoint)
    assert all(torch.allclose(wf[k].float(), wr[k].float(), atol=1e-6) for k in wf)
    assert len(pd.read_csv(resumed.log)) == 3


def test_existing_run_not_overwritten(synth_manifest: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synth_manifest, tmp_path / "run", epochs=1)
    Trainer(cfg, progress=False).run()
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a training run"):
        Trainer(cfg, progress=False).run()
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_resume_with_changed_config_refused(synth_manifest: Path, tmp_path: Path) -> None:
    Trainer(tiny_config(synth_manifest, tmp_path / "run", epochs=2), progress=False).run(stop_after=1)
    with pytest.raises(ConfigError, match="configuration differs"):
        Trainer(tiny_config(synth_manifest, tmp_path / "run", epochs=2, lr=0.5), progress=False).run(resume=True)


def test_labels_output_mode_trains(synth_manifest: Path, tmp_path: Path) -> None:
    data = tiny_config(synth_manifest, tmp_path / "lab", epochs=1)
    cfg = build_dataclass(TrainConfig, {**_plain(data), "data": {"manifest": str(synth_manifest),
                                                                  "output_mode": "labels"}})
    res = Trainer(cfg, progress=False).run()
    ckpt = load_checkpoint(res.best_checkpoint)
    assert ckpt.output_mode == "labels" and ckpt.model_config["out_channels"] == 4


def _plain(cfg: TrainConfig) -> dict:
    from volrob.utils.config import to_plain

    return to_plain(cfg)


def test_config_file_and_overrides(synth_manifest: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  manifest: {synth_manifest}\ntrain:\n  epochs: 3\n")
    cfg = load_train_config(path, ["train.epochs=5", "inference.roi_size=[32,32,32]", "model.options.dropout=0.1"])
    assert cfg.train.epochs == 5 and cfg.inference.roi_size == (32, 32, 32) and cfg.model.options == {"dropout": 0.1}


@pytest.mark.parametrize(
    ("sections", "overrides", "fragment"),
    [
        ({"train": {"epochs": 0}}, [], "train.epochs must be >= 1"),
        ({"train": {"epochs": "two"}}, [], "train.epochs: expected an integer"),
        ({"train": {"epoch": 3}}, [], "unknown key"),
        ({"data": {"output_mode": "voxels"}}, [], "output_mode"),
        ({"inference": {"overlap": 1.5}}, [], "overlap"),
        ({"preprocessing": {"spacing": [1, 1]}}, [], "spacing"),
        ({"augmentation": {"flip_prob": 2}}, [], "flip_prob"),
        ({}, ["train.epochs"], "--set expects key=value"),
        ({}, ["data.manifest=''"], "data.manifest is required"),
    ],
)
def test_bad_config(tmp_path: Path, sections: dict, overrides: list[str], fragment: str) -> None:
    data = {"data": {"manifest": "m.json"}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=fragment) as info:
        load_train_config(path, overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "fragment"), [("- a\n- b\n", "top level must be a mapping"),
                                                ("train: [\n", "not valid YAML")])
def test_unparsable_config(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment) as info:
        load_train_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "none.yaml")
