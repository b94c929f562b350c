"""``volrob evaluate``: tidy clean scores, predictions on the source grid in the data's label convention,
provenance, determinism, resume, window overrides, and refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from volrob.cli.main import main
from volrob.data.manifest import load_manifest
from volrob.engine.tables import CLEAN_COLUMNS


def _evaluate(checkpoint: Path, manifest: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "-o", str(out),
                 "--quiet", "--threads", "1", *extra])


@pytest.mark.usefixtures("one_thread")
def test_outputs(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    assert _evaluate(tiny_checkpoint, synth_manifest, tmp_path / "ev", "--split", "test") == 0
    man = load_manifest(synth_manifest)
    test_ids = sorted(c.id for c in man.split("test"))
    df = pd.read_csv(tmp_path / "ev" / "results.csv")
    assert list(df.columns) == CLEAN_COLUMNS
    assert sorted(df["case"].unique()) == test_ids and len(df) == len(test_ids) * 3 * 3
    # brats2021 data: the official BraTS definitions by default (docs/scoring.md)
    assert set(df["region"]) == {"TC", "WT", "ET"} and set(df["metric"]) == {"dice", "hd95_brats", "nsd"}
    assert df.loc[df.metric != "hd95_brats", "clean"].between(0, 1).all()
    assert (df.loc[df.metric == "hd95_brats", "clean"] >= 0).all()
    summary = pd.read_csv(tmp_path / "ev" / "summary.csv")
    assert summary["n"].eq(len(test_ids)).all() and set(summary["model"]) == {"unet"}
    run = json.loads((tmp_path / "ev" / "run.json").read_text())
    assert run["command"] == "evaluate" and run["config"]["split"] == "test"
    assert run["config"]["empty_policy"] == "brats" and len(run["models"]["unet"]["sha256"]) == 64
    assert run["scoring"]["metrics"] == ["dice", "hd95_brats", "nsd"] and run["scoring"]["challenge"] is None
    assert run["models"]["unet"]["fast_path"] == {"device": "cpu", "amp_dtype": "float32", "channels_last": False,
                                                  "cudnn_benchmark": False, "compile": "off"}  # CPU: plain float32
    for cid in test_ids:
        case = next(c for c in man.cases if c.id == cid)
        src = nib.load(man.resolve(case.label))
        pred = nib.load(tmp_path / "ev" / "predictions" / "unet" / f"{cid}_pred.nii.gz")
        assert pred.shape == src.shape
        np.testing.assert_allclose(pred.affine, src.affine)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}


@pytest.mark.usefixtures("one_thread")
def test_deterministic_resumes_and_force(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    assert _evaluate(tiny_checkpoint, synth_manifest, tmp_path / "a", "--split", "val", "--no-predictions") == 0
    first = pd.read_csv(tmp_path / "a" / "results.csv")
    unit = next((tmp_path / "a" / "clean").rglob("*.json"))
    stamp = unit.stat().st_mtime_ns
    assert _evaluate(tiny_checkpoint, synth_manifest, tmp_path / "a", "--split", "val", "--no-predictions") == 0
    assert unit.stat().st_mtime_ns == stamp  # resumed: nothing recomputed
    assert _evaluate(tiny_checkpoint, synth_manifest, tmp_path / "b", "--split", "val", "--no-predictions",
                     "--force") == 0
    cols = [c for c in first.columns if c != "seconds"]
    pd.testing.assert_frame_equal(first[cols], pd.read_csv(tmp_path / "b" / "results.csv")[cols])


@pytest.mark.usefixtures("one_thread")
def test_window_override_and_policy(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    assert _evaluate(tiny_checkpoint, synth_manifest, tmp_path / "w", "--split", "val", "--overlap", "0.5",
                     "--blend", "constant", "--empty-policy", "diagonal", "--no-predictions") == 0
    run = json.loads((tmp_path / "w" / "run.json").read_text())
    assert run["models"]["unet"]["window"]["overlap"] == 0.5 and run["models"]["unet"]["window"]["mode"] == "constant"
    assert run["config"]["empty_policy"] == "diagonal"


@pytest.mark.parametrize(("args", "match"), [
    (["--split", "unlabelled"], "no cases in split 'unlabelled'"),
    (["--split", "tset"], "unknown split"),
    (["--overlap", "2.0"], "overlap"),
    (["--sw-batch-size", "0"], "sw_batch_size"),
])
def test_bad_inputs(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path, args: list[str], match: str,
                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _evaluate(tiny_checkpoint, synth_manifest, tmp_path / "x", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]
    assert not (tmp_path / "x" / "results.csv").exists()


def test_modality_order_mismatch(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(synth_manifest.read_text())
    data["modalities"] = ["flair", "t1", "t1ce", "t2"]
    other = tmp_path / "m" / "manifest.json"
    shutil.copytree(synth_manifest.parent, other.parent)
    other.write_text(json.dumps(data))
    assert _evaluate(tiny_checkpoint, other, tmp_path / "x") == 2
    assert "modalities" in capsys.readouterr().err
    assert not (tmp_path / "x" / "results.csv").exists()
