"""``volrob evaluate`` and ``volrob attack`` with ``--model nnunet:FOLDER --folds 0`` end to end, on the synthetic
manifest; the written predictions are compared with nnU-Net predicting the same case files itself."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("nnunetv2", reason="nnunet extra not installed: pip install -e '.[nnunet]'")

from helpers.nnunet_folder import write_trained_folder
from helpers.nnunet_oracle import float32_stitching, nnunet_predictor, predict_files

from volrob.cli.main import main
from volrob.data.labels import get_convention
from volrob.data.manifest import load_manifest


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 mm, voxel-order plans (the synthetic cases need no resampling), no mirroring (as nnU-Net's
    NoMirroring trainers save it), two folds on disk of which the command asks for one."""
    return write_trained_folder(tmp_path_factory.mktemp("nnunet_cli"), folds=(0, 1), patch=(32, 32, 32),
                                mirror_axes=None, seed=3)


@pytest.fixture(scope="module")
def threads() -> Iterator[None]:
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def run(command: str, folder: Path, manifest: Path, out: Path, *args: str) -> int:
    return main([command, "--model", f"nnunet:{folder}", "--folds", "0", "--manifest", str(manifest), "--split",
                 "val", "-o", str(out), "--threads", "1", "--quiet", *args])


def test_evaluate_writes_nnunet_predictions(folder: Path, synth_manifest: Path, tmp_path: Path,
                                            threads: None) -> None:
    out = tmp_path / "eval"
    assert run("evaluate", folder, synth_manifest, out) == 0
    manifest = load_manifest(synth_manifest)
    (case,) = manifest.split("val")
    df = pd.read_csv(out / "results.csv")
    assert set(df["case"]) == {case.id} and set(df["region"]) == {"TC", "WT", "ET"} and df["clean"].notna().all()
    model = df["model"].iloc[0]
    ours = np.asarray(nib.load(str(out / "predictions" / model / f"{case.id}_pred.nii.gz")).dataobj)
    files = [manifest.resolve(case.images[m].path) for m in manifest.modalities]
    with float32_stitching():
        seg, _ = predict_files(nnunet_predictor(folder, (0,)), files, tmp_path / "nnunet" / case.id)
    theirs = get_convention(case.label_convention).from_canonical(get_convention("msd").to_canonical(seg))
    np.testing.assert_array_equal(ours, theirs)
    assert len(np.unique(theirs)) == 4  # background and the three tumour labels: not a trivial comparison
    record = json.loads((out / "run.json").read_text())
    text = json.dumps(record)
    sha = hashlib.sha256((folder / "fold_0" / "checkpoint_final.pth").read_bytes()).hexdigest()
    assert sha in text and '"configuration": "3d_fullres"' in text and '"folds": [0]' in text


def test_attack_keeps_the_budget(folder: Path, synth_manifest: Path, tmp_path: Path, threads: None) -> None:
    out = tmp_path / "attack"
    assert run("attack", folder, synth_manifest, out, "--attack", "pgd", "--eps", "8", "--steps", "2") == 0
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 9 and df[["clean", "adversarial"]].notna().all().all()
    assert (df["linf_255"] <= 8 + 1e-3).all() and (df["linf_255"] > 0).all()
    sha = hashlib.sha256((folder / "fold_0" / "checkpoint_final.pth").read_bytes()).hexdigest()
    assert (df["model_sha256"] == sha).all()
    manifest = load_manifest(synth_manifest)
    (case,) = manifest.split("val")
    (adv_dir,) = (out / "adversarial").iterdir()
    for m in manifest.modalities:
        src = np.asarray(nib.load(str(manifest.resolve(case.images[m].path))).dataobj)
        adv = np.asarray(nib.load(str(adv_dir / case.id / f"{case.id}_{m}.nii.gz")).dataobj)
        assert adv.shape == src.shape and (adv[src == 0] == 0).all()


def test_folds_flag_is_checked(folder: Path, synth_manifest: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--model", f"nnunet:{folder}", "--folds", "4", "--manifest", str(synth_manifest),
                 "--split", "val", "-o", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fold 4 has no checkpoint_final.pth" in err[0]
