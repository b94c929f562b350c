"""Cases without a label (inference only: predicted and attacked, never scored) and cases whose label map is empty
(scored under the empty policy and named as a warning in the run record and the output)."""

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


@pytest.fixture()
def mixed_manifest(synth_manifest: Path, tmp_path: Path) -> Path:
    """The synthetic data with its test case unlabelled (split ``unlabelled``) and one validation case's label map
    emptied."""
    root = tmp_path / "data"
    shutil.copytree(synth_manifest.parent, root)
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    man = load_manifest(path)
    test = next(c for c in data["cases"] if c["split"] == "test")
    test["label"], test["split"] = None, "unlabelled"
    test.pop("sha256", None)
    val = next(c for c in data["cases"] if c["split"] == "val")
    label = man.resolve(val["label"])
    img = nib.load(label)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), str(label))
    val.pop("sha256", None)
    path.write_text(json.dumps(data))
    return path


def _ids(manifest: Path, split: str) -> list[str]:
    return [c.id for c in load_manifest(manifest).split(split)]


@pytest.mark.usefixtures("one_thread")
def test_unlabelled_cases_are_predicted_and_attacked_not_scored(tiny_checkpoint: Path, mixed_manifest: Path,
                                                               tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "atk"
    code = main(["attack", "--checkpoint", str(tiny_checkpoint), "--manifest", str(mixed_manifest), "--split",
                 "unlabelled", "--attack", "pgd", "--eps", "8", "--steps", "2", "-o", str(out), "--quiet",
                 "--threads", "1"])
    assert code == 0
    (case,) = _ids(mixed_manifest, "unlabelled")
    printed = capsys.readouterr().out
    assert "1 case(s) have no label: predicted and attacked" in printed and case in printed
    results = pd.read_csv(out / "results.csv")
    assert results.empty  # nothing to score against
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["unlabelled_cases"] == [case] and run["failed"] == 0
    unit = json.loads(next((out / "units").rglob(f"{case}.json")).read_text())
    assert unit["labelled"] is False and unit["perturbation"]["linf_255"] <= 8 + 1e-3
    src = nib.load(next(p for p in mixed_manifest.parent.rglob(f"{case}*t1.nii.gz")))
    clean = nib.load(out / "predictions" / "unet" / f"{case}_pred.nii.gz")
    adv = nib.load(next((out / "predictions").rglob(f"*/unet/{case}_pred.nii.gz")))
    for pred in (clean, adv):
        assert pred.shape == src.shape and set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}
        np.testing.assert_allclose(pred.affine, src.affine)
    assert np.asarray(clean.dataobj).any()  # the attack's target: the model's own clean prediction
    # resumes: a second run computes nothing
    assert main(["attack", "--checkpoint", str(tiny_checkpoint), "--manifest", str(mixed_manifest), "--split",
                 "unlabelled", "--attack", "pgd", "--eps", "8", "--steps", "2", "-o", str(out), "--quiet",
                 "--threads", "1"]) == 0
    assert json.loads((out / "run.json").read_text())["computed_now"] == 0


@pytest.mark.usefixtures("one_thread")
def test_empty_label_map_is_scored_and_named(tiny_checkpoint: Path, mixed_manifest: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ev"
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--manifest", str(mixed_manifest), "--split",
                 "val", "-o", str(out), "--quiet", "--threads", "1", "--no-predictions"]) == 0
    empty = next(c.id for c in load_manifest(mixed_manifest).split("val")
                 if not np.asarray(nib.load(load_manifest(mixed_manifest).resolve(c.label)).dataobj).any())
    printed = capsys.readouterr().out
    assert "have an empty label map (no tumour)" in printed and empty in printed
    run = json.loads((out / "run.json").read_text())
    assert run["empty_label_cases"] == [empty] and run["unlabelled_cases"] == []
    rows = pd.read_csv(out / "results.csv")
    assert set(rows["case"]) == set(_ids(mixed_manifest, "val"))  # still scored, under the empty policy
    dice = rows[(rows.case == empty) & (rows.metric == "dice")]["clean"]
    assert dice.isin([0.0, 1.0]).all()


def test_roi_crop_needs_labels(tiny_checkpoint: Path, mixed_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "crop"
    code = main(["attack", "--checkpoint", str(tiny_checkpoint), "--manifest", str(mixed_manifest), "--split",
                 "unlabelled", "--attack", "fgsm", "--eps", "4", "-o", str(out), "--quiet", "--threads", "1",
                 "--set", "roi_crop=tumour"])
    assert code == 1  # the unit fails, named, and the run goes on
    failures = pd.read_csv(out / "failures.csv")
    assert failures["reason"].str.contains("has no label: the ROI-crop protocol").all()
