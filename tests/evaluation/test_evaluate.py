"""End-to-end evaluation: tidy metrics, predictions on the source grid, provenance, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from volrob.data.manifest import load_manifest
from volrob.errors import ConfigError, DataError
from volrob.evaluation.evaluate import RESULT_COLUMNS, evaluate


def test_outputs(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    res = evaluate(tiny_checkpoint, synth_manifest, tmp_path / "ev", split="test", progress=False)
    man = load_manifest(synth_manifest)
    test_ids = sorted(c.id for c in man.split("test"))
    df = pd.read_csv(tmp_path / "ev" / "metrics.csv")
    assert list(df.columns) == RESULT_COLUMNS
    assert sorted(df["case"].unique()) == test_ids
    assert len(df) == len(test_ids) * 3 * 3
    assert set(df["region"]) == {"TC", "WT", "ET"} and set(df["metric"]) == {"dice", "hd95", "nsd"}
    assert df["value"].notna().all()
    assert df.loc[df.metric != "hd95", "value"].between(0, 1).all()
    assert (df.loc[df.metric == "hd95", "value"] >= 0).all()
    assert res.summary["n"].eq(len(test_ids)).all()
    run = json.loads((tmp_path / "ev" / "run.json").read_text())
    assert run["split"] == "test" and run["empty_policy"] == "brats" and len(run["checkpoint_sha256"]) == 64
    for cid in test_ids:
        case = next(c for c in man.cases if c.id == cid)
        src = nib.load(man.resolve(case.label))
        pred = nib.load(tmp_path / "ev" / "predictions" / f"{cid}_pred.nii.gz")
        assert pred.shape == src.shape
        np.testing.assert_allclose(pred.affine, src.affine)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}


def test_deterministic_and_refuses_overwrite(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    a = evaluate(tiny_checkpoint, synth_manifest, tmp_path / "a", split="val", progress=False,
                 save_predictions=False)
    before = (tmp_path / "a" / "metrics.csv").read_bytes()
    with pytest.raises(ConfigError, match="already holds metrics.csv"):
        evaluate(tiny_checkpoint, synth_manifest, tmp_path / "a", split="val", progress=False)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == before
    b = evaluate(tiny_checkpoint, synth_manifest, tmp_path / "a", split="val", progress=False, force=True,
                 save_predictions=False)
    pd.testing.assert_frame_equal(a.rows, b.rows)


def test_window_override_and_policy(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    res = evaluate(tiny_checkpoint, synth_manifest, tmp_path / "w", split="val", progress=False,
                   window={"overlap": 0.5, "mode": "constant"}, empty_policy="diagonal", save_predictions=False)
    run = json.loads((tmp_path / "w" / "run.json").read_text())
    assert run["window"]["overlap"] == 0.5 and run["window"]["mode"] == "constant"
    assert run["empty_policy"] == "diagonal" and len(res.rows) > 0


def test_bad_inputs(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no cases in split 'unlabelled'"):
        evaluate(tiny_checkpoint, synth_manifest, tmp_path / "x", split="unlabelled", progress=False)
    with pytest.raises(DataError, match="unknown split"):
        evaluate(tiny_checkpoint, synth_manifest, tmp_path / "x", split="tset", progress=False)
    with pytest.raises(ConfigError, match="overlap"):
        evaluate(tiny_checkpoint, synth_manifest, tmp_path / "x", window={"overlap": 2.0}, progress=False)
    with pytest.raises(ConfigError, match="empty_policy"):
        evaluate(tiny_checkpoint, synth_manifest, tmp_path / "x", empty_policy="ignore", progress=False)
    data = json.loads(synth_manifest.read_text())
    data["modalities"] = ["flair", "t1", "t1ce", "t2"]
    other = tmp_path / "m" / "manifest.json"
    other.parent.mkdir()
    shutil.copytree(synth_manifest.parent, other.parent, dirs_exist_ok=True)
    other.write_text(json.dumps(data))
    with pytest.raises(DataError, match="modalities"):
        evaluate(tiny_checkpoint, other, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
