"""``volrob attack``: tidy clean-vs-adversarial rows, adversarial volumes on the source grid, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from volrob.cli.main import main
from volrob.data.manifest import load_manifest
from volrob.errors import ConfigError
from volrob.robustness.attack_run import RESULT_COLUMNS, attack_manifest, case_seed, degradation
from volrob.robustness.perturbation import perturbation_stats


def test_degradation_directions() -> None:
    assert degradation("dice", 0.8, 0.2) == pytest.approx((0.6, 0.75))
    assert degradation("nsd", 0.5, 0.5) == (0.0, 0.0)
    assert degradation("hd95", 2.0, 10.0) == pytest.approx((8.0, 4.0))
    assert degradation("hd95", 0.0, 3.0) == (3.0, 0.0)  # nothing relative to a perfect 0 mm


def test_case_seed_depends_on_seed_and_id_only() -> None:
    assert case_seed(0, "a") == case_seed(0, "a")
    assert len({case_seed(0, "a"), case_seed(1, "a"), case_seed(0, "b")}) == 3


def test_perturbation_stats_by_hand() -> None:
    x = torch.zeros(1, 2, 8, 8, 8)
    x[:, :, 2:6, 2:6, 2:6] = 0.5
    adv = x.clone()
    adv[0, 0, 3, 3, 3] += 4 / 255
    s = perturbation_stats(x, adv)[0]
    assert s["linf_255"] == pytest.approx(4.0, rel=1e-5) and s["l2_255"] == pytest.approx(4.0, rel=1e-5)
    mse = (4 / 255) ** 2 / (2 * 64)  # one changed voxel among the brain voxels of both channels
    assert s["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    assert 0.9 < s["ssim"] < 1.0
    assert perturbation_stats(x, x)[0] == {"linf_255": 0.0, "l2_255": 0.0, "ssim": pytest.approx(1.0), "psnr": 100.0}


def test_attack_run_outputs(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    res = attack_manifest(tiny_checkpoint, synth_manifest, tmp_path / "a", attack="pgd",
                          attack_options={"eps": 8, "steps": 2}, split="val", progress=False)
    df = pd.read_csv(tmp_path / "a" / "results.csv")
    assert list(df.columns) == RESULT_COLUMNS
    man = load_manifest(synth_manifest)
    val = man.split("val")
    assert len(df) == len(val) * 9 and df[["clean", "adversarial"]].notna().all().all()
    assert (df["linf_255"] <= 8 + 1e-3).all() and (df["linf_255"] > 0).all()
    assert df["ssim"].between(0, 1).all() and json.loads(df["threat"].iloc[0])["eps"] == 8
    dice = df[df.metric == "dice"]
    assert np.allclose(dice["degradation"], dice["clean"] - dice["adversarial"])
    assert set(res.summary["region"]) == {"TC", "WT", "ET"}
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["attack"] == "pgd" and run["attack_options"] == {"eps": 8, "steps": 2}
    case = val[0]
    for mod in man.modalities:
        adv = nib.load(tmp_path / "a" / "adversarial" / case.id / f"{case.id}_{mod}.nii.gz")
        src = nib.load(man.resolve(case.images[mod].path))
        assert adv.shape == src.shape and adv.get_data_dtype() == np.float32
        np.testing.assert_allclose(adv.affine, src.affine)
        arr = np.asarray(adv.dataobj)
        assert arr.min() >= 0 and arr.max() <= 1 + 1e-6
        assert (arr[np.asarray(src.dataobj) == 0] == 0).all()  # background stays 0 (brain mask)
    again = attack_manifest(tiny_checkpoint, synth_manifest, tmp_path / "a", attack="pgd",
                            attack_options={"eps": 8, "steps": 2}, split="val", progress=False, force=True,
                            save_volumes=False)
    cols = ["case", "region", "metric", "clean", "adversarial", "linf_255"]
    pd.testing.assert_frame_equal(res.rows[cols], again.rows[cols])  # same seed, same table


def test_attack_run_refusals(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown attack"):
        attack_manifest(tiny_checkpoint, synth_manifest, tmp_path / "x", attack="pgdd", progress=False)
    with pytest.raises(ConfigError, match="eps"):
        attack_manifest(tiny_checkpoint, synth_manifest, tmp_path / "x", attack="pgd",
                        attack_options={"eps": -1}, progress=False)
    with pytest.raises(ConfigError, match="seed"):
        attack_manifest(tiny_checkpoint, synth_manifest, tmp_path / "x", attack="fgsm",
                        attack_options={"seed": 3}, progress=False)
    assert not (tmp_path / "x").exists()
    attack_manifest(tiny_checkpoint, synth_manifest, tmp_path / "y", attack="fgsm", split="val", progress=False,
                    save_volumes=False)
    before = (tmp_path / "y" / "results.csv").read_bytes()
    with pytest.raises(ConfigError, match="already holds results.csv"):
        attack_manifest(tiny_checkpoint, synth_manifest, tmp_path / "y", attack="fgsm", progress=False)
    assert (tmp_path / "y" / "results.csv").read_bytes() == before


def test_attack_cli(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["attack", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--attack",
                 "vafa3d", "--split", "val", "--param", "steps=2", "--param", "block=8", "-o", str(tmp_path / "v"),
                 "--no-volumes", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "vafa3d on" in out and "WT" in out
    df = pd.read_csv(tmp_path / "v" / "results.csv")
    assert json.loads(df["threat"].iloc[0])["eps"] is None  # VAFA has no voxel budget, and says so
    code = main(["attack", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--attack",
                 "pgd", "--eps", "8", "--param", "bogus=1", "-o", str(tmp_path / "b"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "bogus" in err
