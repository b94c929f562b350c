"""The trainer with a ``defence:`` section and ``train.init_from``: every batch seen once per epoch, per-step seeds,
the defence recorded in checkpoints, fine-tuning from a checkpoint, resume with adversarial crafting, bad input."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from volrob.checkpoint import load_checkpoint
from volrob.data.manifest import load_manifest
from volrob.defences.standard import NoDefence
from volrob.errors import CheckpointError, ConfigError
from volrob.training.config import TrainConfig
from volrob.training.trainer import Trainer, step_seed
from volrob.utils.config import build_dataclass, to_plain


def config(manifest: Path, out: Path, *, defence: dict[str, Any] | None = None, model: dict[str, Any] | None = None,
           **train: Any) -> TrainConfig:
    data: dict[str, Any] = {
        "seed": 5, "output_dir": str(out), "model": model or {"name": "unet", "preset": "tiny"},
        "data": {"manifest": str(manifest)},
        "train": {"epochs": 2, "batch_size": 2, "crops_per_case": 1, "lr": 0.01, "val_every": 1, "warmup_epochs": 0,
                  **train},
        "inference": {"roi_size": [32, 32, 32], "overlap": 0.25, "sw_batch_size": 4},
    }
    if defence is not None:
        data["defence"] = defence
    return build_dataclass(TrainConfig, data)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def test_every_epoch_visits_every_batch(synth_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        one_thread: None) -> None:
    calls: list[tuple[int, int]] = []
    original = NoDefence.batch_loss

    def counting(self: NoDefence, ctx: Any, images: torch.Tensor, targets: torch.Tensor, *, seed: int) -> Any:
        calls.append((images.shape[0], seed))
        return original(self, ctx, images, targets, seed=seed)

    monkeypatch.setattr(NoDefence, "batch_loss", counting)
    crops = 2
    res = Trainer(config(synth_manifest, tmp_path / "run", epochs=3, crops_per_case=crops), progress=False).run()
    n_cases = len(load_manifest(synth_manifest).split("train"))  # batch_size counts cases, each gives `crops` crops
    per_epoch = math.ceil(n_cases / 2)
    assert len(calls) == 3 * per_epoch
    for e in range(3):
        assert sum(b for b, _ in calls[e * per_epoch:(e + 1) * per_epoch]) == n_cases * crops
    assert [s for _, s in calls] == [step_seed(5, k) for k in range(len(calls))]
    assert len({s for _, s in calls}) == len(calls)
    assert list(pd.read_csv(res.log)["step"]) == [per_epoch * (e + 1) for e in range(3)]


def test_default_defence_recorded(synth_manifest: Path, tmp_path: Path, one_thread: None) -> None:
    res = Trainer(config(synth_manifest, tmp_path / "run", epochs=1), progress=False).run()
    for path in (res.best_checkpoint, res.last_checkpoint):
        prov = load_checkpoint(path).provenance
        assert prov["defence"] == {"name": "none", "params": {}}
        assert "init_from" not in prov
    assert "loss_clean" in pd.read_csv(res.log).columns


def test_init_from_starts_at_the_checkpoint(synth_manifest: Path, tmp_path: Path, one_thread: None) -> None:
    src = Trainer(config(synth_manifest, tmp_path / "src", epochs=1), progress=False).run().last_checkpoint
    source = load_checkpoint(src)
    tuned = Trainer(config(synth_manifest, tmp_path / "tuned", epochs=1, lr=1e-12, init_from=str(src)),
                    progress=False).run()
    ckpt = load_checkpoint(tuned.last_checkpoint)
    assert ckpt.provenance["init_from"] == {"path": str(src), "sha256": source.sha256}
    assert ckpt.normalisation == source.normalisation
    w0, w1 = source.state_dict, ckpt.state_dict
    assert all(torch.allclose(w0[k].float(), w1[k].float(), atol=1e-6) for k in w0)
    fresh = Trainer(config(synth_manifest, tmp_path / "fresh", epochs=1, lr=1e-12), progress=False).run()
    wf = weights(fresh.last_checkpoint)
    assert not all(torch.allclose(w0[k].float(), wf[k].float(), atol=1e-3) for k in w0)


def test_init_from_mismatch_refused(synth_manifest: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    other = {"name": "unet", "preset": "tiny", "options": {"channels": [4, 8, 16, 32]}}
    with pytest.raises(ConfigError, match="init_from: the checkpoint's model configuration"):
        Trainer(config(synth_manifest, tmp_path / "r", model=other, init_from=str(tiny_checkpoint)), progress=False)
    with pytest.raises(CheckpointError, match="holds model 'unet', expected 'segresnet'"):
        Trainer(config(synth_manifest, tmp_path / "r", model={"name": "segresnet", "preset": "tiny"},
                       init_from=str(tiny_checkpoint)), progress=False)
    with pytest.raises(CheckpointError, match="missing.pt"):
        Trainer(config(synth_manifest, tmp_path / "r", init_from=str(tmp_path / "missing.pt")), progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("defence", "match"), [
    ({"name": "madry"}, "unknown defence 'madry'"),
    ({"name": "none", "options": {"eps": 4}}, r"unknown option\(s\) \['eps'\]"),
    ({"name": "none", "options": [1]}, "defence.options"),
])
def test_bad_defence_section(synth_manifest: Path, tmp_path: Path, defence: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config(synth_manifest, tmp_path / "r", defence=defence)


def test_adversarial_resume_equals_uninterrupted(synth_manifest: Path, tmp_path: Path, one_thread: None) -> None:
    defence = {"name": "pgd_at", "options": {"eps": 4, "steps": 2, "clean_weight": 0.5}}
    full = Trainer(config(synth_manifest, tmp_path / "full", epochs=2, defence=defence), progress=False).run()
    part = config(synth_manifest, tmp_path / "part", epochs=2, defence=defence)
    Trainer(part, progress=False).run(stop_after=1)
    resumed = Trainer(part, progress=False).run(resume=True)
    wf, wr = weights(full.last_checkpoint), weights(resumed.last_checkpoint)
    assert all(torch.allclose(wf[k].float(), wr[k].float(), atol=1e-6) for k in wf)
    log_f, log_r = (pd.read_csv(r.log).drop(columns="seconds") for r in (full, resumed))
    pd.testing.assert_frame_equal(log_f, log_r)
    prov = load_checkpoint(full.best_checkpoint).provenance
    assert prov["defence"]["name"] == "pgd_at" and prov["defence"]["params"]["eps"] == 4
    assert {"loss_clean", "loss_adversarial"} <= set(log_f.columns)
    assert to_plain(part)["defence"] == defence
