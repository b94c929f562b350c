"""The run's metric set in the engine: the default by label convention, the record in run.json and in every unit's
parameters, BraTS 2024 data scored on its six regions (the rows equal ``volrob score`` on the run's own predicted
label maps), and refusals before any work."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from volrob.cli.main import main
from volrob.data.manifest import load_manifest
from volrob.data.readers import read_label
from volrob.evaluation.label_maps import score_label_maps
from volrob.evaluation.metric_set import resolve_metric_set


def _evaluate(checkpoint: Path, manifest: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "-o", str(out),
                 "--split", "test", "--max-cases", "1", "--quiet", "--threads", "1", *extra])


@pytest.fixture(scope="module")
def brats2024_manifest(synth_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic test cases relabelled in the BraTS 2024 convention, with a resection cavity (label 4) added
    away from the tumour."""
    man = load_manifest(synth_manifest)
    out = tmp_path_factory.mktemp("brats2024")
    data = man.to_json()
    data["root"] = str(man.root_dir)
    data["label_convention"] = "brats2024"
    for entry, case in zip(data["cases"], man.cases, strict=True):
        vol = read_label(man.resolve(case.label))
        raw = np.select([vol.array == 1, vol.array == 2, vol.array == 4], [1, 2, 3], 0).astype(np.int16)
        free = np.argwhere(vol.array == 0)
        corner = free[np.argmin(free.sum(axis=1))]  # the background corner nearest the origin
        raw[tuple(slice(c, c + 4) for c in corner)] = 4
        path = out / f"{case.id}_seg.nii.gz"
        nib.save(nib.Nifti1Image(raw, vol.affine), path)
        entry["label"] = str(path)
        entry.pop("sha256", None)
        entry.pop("label_convention", None)
    (out / "manifest.json").write_text(json.dumps(data))
    return out / "manifest.json"


@pytest.mark.usefixtures("one_thread")
def test_brats2024_six_regions_match_volrob_score(tiny_checkpoint: Path, brats2024_manifest: Path,
                                                 tmp_path: Path) -> None:
    assert _evaluate(tiny_checkpoint, brats2024_manifest, tmp_path / "ev") == 0
    rows = pd.read_csv(tmp_path / "ev" / "results.csv")
    assert set(rows["region"]) == {"ET", "NETC", "SNFH", "RC", "TC", "WT"}
    assert list(pd.unique(rows["metric"])) == ["dice", "hd95_brats", "nsd", "lesion_dice", "lesion_hd95"]
    rc = rows[rows.region == "RC"].set_index("metric")["clean"]
    assert rc["dice"] == 0.0 and rc["hd95_brats"] == 337.0 and rc["lesion_hd95"] == 337.0  # never predicted
    run = json.loads((tmp_path / "ev" / "run.json").read_text())
    assert run["scoring"] == resolve_metric_set("brats2024").record()
    unit = json.loads(next((tmp_path / "ev" / "clean").rglob("*.json")).read_text())
    assert unit["params"]["scoring"]["metrics"] == list(resolve_metric_set("brats2024").metrics)
    assert unit["params"]["scoring"]["lesionwise"] == "gli2024"
    case = rows["case"].iloc[0]
    man = load_manifest(brats2024_manifest)
    ref = read_label(man.resolve(next(c for c in man.cases if c.id == case).label))
    pred = read_label(tmp_path / "ev" / "predictions" / "unet" / f"{case}_pred.nii.gz")
    scored = score_label_maps(pred.array, ref.array, ref.spacing, resolve_metric_set("brats2024"),
                              pred_convention="brats2024", ref_convention="brats2024")
    want = pd.DataFrame(scored.rows)
    np.testing.assert_allclose(rows["clean"].to_numpy(), want["value"].to_numpy(), rtol=1e-12)
    assert rows[["region", "metric"]].values.tolist() == want[["region", "metric"]].values.tolist()


@pytest.mark.usefixtures("one_thread")
def test_chosen_metrics_and_challenge(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    assert _evaluate(tiny_checkpoint, synth_manifest, tmp_path / "ev", "--no-predictions", "--metrics",
                     "dice,hd95,hd95_brats,lesion_dice", "--challenge", "met") == 0
    rows = pd.read_csv(tmp_path / "ev" / "results.csv")
    assert list(pd.unique(rows["metric"])) == ["dice", "hd95", "hd95_brats", "lesion_dice"]
    run = json.loads((tmp_path / "ev" / "run.json").read_text())
    assert run["scoring"]["challenge"]["name"] == "met" and run["config"]["lesionwise"] == "met"
    assert run["config"]["metrics"] == ["dice", "hd95", "hd95_brats", "lesion_dice"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--metrics", "dice,hd99"], "unknown metric(s) ['hd99']"),
    (["--metrics", "dice,dice"], "names a metric twice"),
    (["--metrics", "lesion_dice"], "lesion_dice and lesion_hd95 need a challenge"),  # brats2021 data: no default
    (["--set", "lesionwise=gbm"], "unknown challenge 'gbm'"),
])
def test_refusals_before_any_work(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path, extra: list[str],
                                  message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _evaluate(tiny_checkpoint, synth_manifest, tmp_path / "ev", *extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "ev").exists()
