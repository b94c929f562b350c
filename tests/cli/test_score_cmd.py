"""``volrob score``: label maps written as NIfTI, paired by case id (folders, single files, a manifest), the CSV rows
equal to the library function's values, the lesion detail and the record, conventions of both sides, and exit code
2 with one line for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from volrob.cli.main import main
from volrob.evaluation.label_maps import score_label_maps
from volrob.evaluation.metric_set import resolve_metric_set

AFFINE = np.diag([1.0, 1.25, 2.0, 1.0])
SPACING = (1.0, 1.25, 2.0)
SHAPE = (28, 24, 16)


def label_map(shift: int = 0, *, et: int = 3, extra: bool = False) -> np.ndarray:
    m = np.zeros(SHAPE, np.int16)
    m[4:16, 4:14, 3:10] = 2
    m[7:13, 6:12, 4:9] = 1
    m[8:12, 7:11, 5:8] = et
    if extra:
        m[20:24, 18:22, 11:14] = 1  # a second lesion far from the first
    return np.roll(m, shift, axis=0)


def write(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def score(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["score", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for i, cid in enumerate(["BraTS-GLI-00001-000", "BraTS-GLI-00002-000", "BraTS-GLI-00003-000"]):
        write(ref / f"{cid}-seg.nii.gz", label_map(extra=i == 1))
        if i < 2:
            write(pred / f"{cid}.nii.gz", label_map(shift=i))
    write(pred / "stray_pred.nii", label_map())
    return pred, ref


def library_rows(pred: np.ndarray, ref: np.ndarray, convention: str = "brats2023", metrics: str | None = None,
                 pred_labels: str | None = None) -> pd.DataFrame:
    scored = score_label_maps(pred, ref, SPACING, resolve_metric_set(convention, metrics),
                              pred_convention=pred_labels or convention, ref_convention=convention)
    return pd.DataFrame(scored.rows)


def test_folders_match_library_values(folders: tuple[Path, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    pred, ref = folders
    code, out, _ = score(capsys, str(pred), "--reference", str(ref), "-o", str(tmp_path / "s.csv"))
    assert code == 0
    assert "1 prediction(s) without a reference, not scored: stray" in out
    assert "1 reference case(s) without a prediction, not scored: BraTS-GLI-00003-000" in out
    assert "2 case(s) scored (dice, hd95_brats, nsd, lesion_dice, lesion_hd95; challenge gli)" in out
    table = pd.read_csv(tmp_path / "s.csv")
    assert list(table.columns) == ["case", "region", "metric", "value", "challenge", "prediction", "reference"]
    assert set(table["challenge"]) == {"gli"} and len(table) == 2 * 3 * 5
    for i, cid in enumerate(["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"]):
        want = library_rows(label_map(shift=i), label_map(extra=i == 1))
        got = table[table["case"] == cid].reset_index(drop=True)
        pd.testing.assert_frame_equal(got[["region", "metric", "value"]], want, check_exact=False, rtol=1e-12)
    second = table[table["case"] == "BraTS-GLI-00002-000"].set_index(["region", "metric"])["value"]
    # TC: the 6x6x5 core moved by one voxel (Dice 2 * 150 / 360) and the far lesion missed (Dice 0)
    assert second[("TC", "lesion_dice")] == pytest.approx(300 / 360 / 2)
    lesions = pd.read_csv(tmp_path / "s_lesions.csv")
    tc = lesions[(lesions.case == "BraTS-GLI-00002-000") & (lesions.region == "TC")]
    assert tc["kind"].tolist() == ["lesion", "lesion"] and tc["hd95"].tolist()[1] == 374.0
    assert tc["volume_mm3"].tolist() == [6 * 6 * 5 * 2.5, 4 * 4 * 3 * 2.5]
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["scoring"]["challenge"]["name"] == "gli" and record["without_prediction"] == ["BraTS-GLI-00003-000"]
    assert "TC: 3 lesion(s) counted (1 missed, 0 below the volume threshold), 0 false positive(s)" in out


def test_single_files_any_names_and_legacy_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred = write(tmp_path / "mine.nii.gz", label_map(shift=1))
    ref = write(tmp_path / "truth.nii", label_map())
    code, out, _ = score(capsys, str(pred), "--reference", str(ref), "--metrics", "dice,hd95,hd95_brats",
                         "--ref-labels", "msd", "-o", str(tmp_path / "out"))
    assert code == 0 and "1 case(s) scored (dice, hd95, hd95_brats)" in out
    table = pd.read_csv(tmp_path / "out" / "scores.csv")
    want = library_rows(label_map(shift=1), label_map(), "msd", metrics="dice,hd95,hd95_brats")
    np.testing.assert_allclose(table["value"], want["value"], rtol=1e-12)
    assert set(table["case"]) == {"truth"} and table["challenge"].isna().all()  # the reference names the case
    assert not (tmp_path / "out" / "lesions.csv").exists() and (tmp_path / "out" / "score.json").is_file()


def test_brats2024_references_with_a_brats2023_prediction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref_map = label_map(extra=True)
    ref_map[20:24, 18:22, 11:14] = 4  # a resection cavity (20 voxels, 100 mm³)
    pred = write(tmp_path / "p" / "c1.nii.gz", label_map())
    ref = write(tmp_path / "r" / "c1_seg.nii.gz", ref_map)
    code, out, _ = score(capsys, str(pred), "--reference", str(ref), "--ref-labels", "brats2024", "--pred-labels",
                         "brats2023", "-o", str(tmp_path / "s.csv"))
    assert code == 0 and "challenge gli2024" in out
    table = pd.read_csv(tmp_path / "s.csv").set_index(["region", "metric"])["value"]
    assert sorted({r for r, _ in table.index}) == ["ET", "NETC", "RC", "SNFH", "TC", "WT"]
    assert table[("RC", "dice")] == 0.0 and table[("RC", "hd95_brats")] == 337.0 and table[("RC", "lesion_hd95")] == 337
    want = library_rows(label_map(), ref_map, "brats2024", pred_labels="brats2023")
    np.testing.assert_allclose(table.to_numpy(), want["value"].to_numpy(), rtol=1e-12)


def test_manifest_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = write(tmp_path / "data" / "c1" / "c1_seg.nii.gz", label_map(et=4))
    write(tmp_path / "data" / "c2" / "c2_seg.nii.gz", label_map(et=4))
    cases = [{"id": c, "split": s, "images": {"t1": f"{c}/{c}_t1.nii.gz"}, "label": f"{c}/{c}_seg.nii.gz"}
             for c, s in (("c1", "test"), ("c2", "train"))]
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"format": "volrob-manifest", "version": 1, "name": "t", "layout": "brats2021",
                                    "root": "data", "label_convention": "brats2021", "modalities": ["t1"],
                                    "cases": cases}))
    pred = write(tmp_path / "p" / "c1_pred.nii.gz", label_map(shift=1, et=4))
    code, out, err = score(capsys, str(pred.parent), "--manifest", str(manifest), "--split", "test",
                           "-o", str(tmp_path / "s.csv"))
    assert code == 0 and "1 case(s) scored (dice, hd95_brats, nsd)" in out and "without a prediction" not in out, err
    table = pd.read_csv(tmp_path / "s.csv")
    want = library_rows(label_map(shift=1, et=4), label_map(et=4), "brats2021")
    np.testing.assert_allclose(table["value"], want["value"], rtol=1e-12)
    # ET is 4 in these files: the manifest's brats2021 applied; another convention refuses the value
    code, _, err = score(capsys, str(pred.parent), "--manifest", str(manifest), "--ref-labels", "brats2023",
                         "-o", str(tmp_path / "t.csv"))
    assert code == 2 and f"{ref}: label values [4] are not allowed by convention 'brats2023'" in err


def _bad(tmp_path: Path, kind: str) -> tuple[list[str], str]:
    pred, ref, out = tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", str(tmp_path / "o.csv")
    write(ref, label_map())
    write(pred, label_map())
    if kind == "shape":
        write(pred, np.zeros((5, 5, 5), np.int16))
        return [str(pred), "--reference", str(ref), "-o", out], f"{pred}: shape (5, 5, 5) differs"
    if kind == "affine":
        write(pred, label_map(), np.diag([1.0, 1.0, 2.0, 1.0]))
        return [str(pred), "--reference", str(ref), "-o", out], f"{pred}: affine differs"
    if kind == "pred values":
        write(pred, label_map(et=4))
        return [str(pred), "--reference", str(ref), "-o", out], f"{pred}: label values [4] are not allowed"
    if kind == "ref values":
        return [str(pred), "--reference", str(ref), "--ref-labels", "brats2021", "-o", out], \
            f"{ref}: label values [3] are not allowed by convention 'brats2021'"
    if kind == "no match":
        (tmp_path / "r").mkdir()
        write(tmp_path / "r" / "a.nii.gz", label_map())
        write(tmp_path / "r" / "b.nii.gz", label_map())
        return [str(pred), "--reference", str(tmp_path / "r"), "-o", out], "no prediction matches a reference"
    if kind == "missing":
        return [str(tmp_path / "nope"), "--reference", str(ref), "-o", out], "predictions does not exist"
    if kind == "empty folder":
        (tmp_path / "e").mkdir()
        return [str(tmp_path / "e"), "--reference", str(ref), "-o", out], "holds no NIfTI files"
    if kind == "not nifti":
        (tmp_path / "x.txt").write_text("x")
        return [str(tmp_path / "x.txt"), "--reference", str(ref), "-o", out], "must be a NIfTI file"
    if kind == "duplicate id":
        write(tmp_path / "d" / "c1.nii.gz", label_map())
        write(tmp_path / "d" / "c1-seg.nii.gz", label_map())
        return [str(tmp_path / "d"), "--reference", str(ref), "-o", out], "are both case 'c1'"
    if kind == "exists":
        Path(out).write_text("keep me")
        return [str(pred), "--reference", str(ref), "-o", out], "already exists; pass --force"
    if kind == "split without manifest":
        return [str(pred), "--reference", str(ref), "--split", "test", "-o", out], "--split goes with --manifest"
    if kind == "metric":
        return [str(pred), "--reference", str(ref), "--metrics", "dice,hd99", "-o", out], "unknown metric(s)"
    if kind == "lesion without challenge":
        return [str(pred), "--reference", str(ref), "--ref-labels", "msd", "--metrics", "lesion_dice", "-o", out], \
            "need a challenge"
    if kind == "tolerance":
        return [str(pred), "--reference", str(ref), "--nsd-tolerance", "0", "-o", out], "nsd_tolerance_mm"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["shape", "affine", "pred values", "ref values", "no match", "missing",
                                  "empty folder", "not nifti", "duplicate id", "exists", "split without manifest",
                                  "metric", "lesion without challenge", "tolerance"])
def test_bad_inputs_one_line_exit_2(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, message = _bad(tmp_path, kind)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = score(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    if kind == "exists":
        assert (tmp_path / "o.csv").read_text() == "keep me"
