"""check_manifest: one verdict per case, every problem one line naming its file; other cases unaffected."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from volrob.data.checks import CaseVerdict, check_manifest, format_verdicts, iter_verdicts, summarize
from volrob.data.layouts import SCANNABLE, build_manifest
from volrob.data.manifest import Manifest
from volrob.errors import ConfigError

CASE = "BraTS2021_00002"


def _folder_manifest(root: Path) -> Manifest:
    return build_manifest(root, "brats2021", hash_files=True)


def _only_failure(verdicts: list[CaseVerdict], case_id: str = CASE) -> list[str]:
    """The problems of ``case_id``, checking that every other case passed and every problem is one line."""
    failed = [v for v in verdicts if not v.ok]
    assert [v.case_id for v in failed] == [case_id]
    for p in failed[0].problems:
        assert "\n" not in p
    return failed[0].problems


@pytest.mark.parametrize("layout", SCANNABLE)
@pytest.mark.parametrize("backend", ["nibabel", "sitk"])
def test_clean_datasets_pass(layout: str, backend: str, request: pytest.FixtureRequest) -> None:
    m = build_manifest(request.getfixturevalue(f"{layout}_root"), layout, hash_files=True)
    verdicts = check_manifest(m, backend=backend)
    assert [v.case_id for v in verdicts] == [c.id for c in m.cases]
    assert all(v.ok and v.problems == [] for v in verdicts)
    assert [v.split for v in verdicts] == [c.split for c in m.cases]


def test_shape_mismatch(brats2021_root: Path, write_nii) -> None:
    m = _folder_manifest(brats2021_root)
    bad = write_nii(brats2021_root / CASE / f"{CASE}_t2.nii.gz", np.ones((12, 14, 11), np.float32))
    problems = _only_failure(check_manifest(m, verify_hashes=False))
    assert problems == [f"{bad}: t2 shape (12, 14, 11) differs from t1 shape (12, 14, 10)"]


def test_affine_mismatch(brats2021_root: Path, write_nii) -> None:
    m = _folder_manifest(brats2021_root)
    shifted = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 2.5], [0, 0, 0, 1]])
    bad = write_nii(brats2021_root / CASE / f"{CASE}_flair.nii.gz", np.ones((12, 14, 10), np.float32), shifted)
    problems = _only_failure(check_manifest(m, verify_hashes=False))
    assert len(problems) == 1
    assert problems[0].startswith(f"{bad}: flair affine differs from t1 affine (max difference 2.5")


def test_spacing_mismatch(brats2021_root: Path, write_nii) -> None:
    m = _folder_manifest(brats2021_root)
    aff = np.diag([-1.0, -1.0, 2.0, 1.0])
    aff[1, 3] = 239.0
    bad = write_nii(brats2021_root / CASE / f"{CASE}_t1ce.nii.gz", np.ones((12, 14, 10), np.float32), aff)
    problems = _only_failure(check_manifest(m, verify_hashes=False))
    assert problems == [f"{bad}: t1ce spacing (1, 1, 2) differs from t1 spacing (1, 1, 1)"]


def test_label_geometry_and_values(brats2021_root: Path, write_nii) -> None:
    m = _folder_manifest(brats2021_root)
    seg = brats2021_root / CASE / f"{CASE}_seg.nii.gz"
    lab = np.zeros((12, 14, 10), np.uint8)
    lab[1, 1, 1], lab[2, 2, 2] = 3, 7
    write_nii(seg, lab)
    problems = _only_failure(check_manifest(m, verify_hashes=False))
    assert problems == [f"{seg}: label values [3, 7] are not allowed by convention 'brats2021' (0, 1, 2, 4)"]
    write_nii(seg, np.zeros((12, 14, 9), np.uint8))
    problems = _only_failure(check_manifest(m, verify_hashes=False))
    assert problems == [f"{seg}: label shape (12, 14, 9) differs from t1 shape (12, 14, 10)"]


def test_nan_missing_and_truncated_files_all_reported(brats2021_root: Path, write_nii) -> None:
    m = _folder_manifest(brats2021_root)
    folder = brats2021_root / CASE
    data = np.ones((12, 14, 10), np.float32)
    data[0, 0, 0] = np.nan
    write_nii(folder / f"{CASE}_t1.nii.gz", data)
    (folder / f"{CASE}_t2.nii.gz").unlink()
    flair = folder / f"{CASE}_flair.nii.gz"
    flair.write_bytes(flair.read_bytes()[:200])
    problems = _only_failure(check_manifest(m, verify_hashes=False))
    assert len(problems) == 3
    assert problems[0] == f"{folder / f'{CASE}_t1.nii.gz'}: 1 NaN and 0 Inf voxels out of 1680"
    assert problems[1] == f"{folder / f'{CASE}_t2.nii.gz'}: file does not exist"
    assert problems[2].startswith(f"{flair}: unreadable or truncated image")


def test_bad_hash_reported_only_when_verifying(brats2021_root: Path) -> None:
    m = _folder_manifest(brats2021_root)
    case = next(c for c in m.cases if c.id == CASE)
    case.sha256["t1"] = "0" * 64
    case.sha256["label"] = "f" * 64
    problems = _only_failure(check_manifest(m))
    assert problems == [
        f"{brats2021_root / CASE / f'{CASE}_t1.nii.gz'}: sha256 of t1 is {_sha(m, 't1')[:12]}…, "
        f"manifest says 000000000000…",
        f"{brats2021_root / CASE / f'{CASE}_seg.nii.gz'}: sha256 of label is {_sha(m, 'label')[:12]}…, "
        f"manifest says ffffffffffff…",
    ]
    assert all(v.ok for v in check_manifest(m, verify_hashes=False))


def _sha(m: Manifest, key: str) -> str:
    case = next(c for c in m.cases if c.id == CASE)
    rel = case.label if key == "label" else case.images[key].path
    assert rel is not None
    return hashlib.sha256(m.resolve(rel).read_bytes()).hexdigest()


def test_modified_file_fails_hash(brats2021_root: Path, write_nii) -> None:
    m = _folder_manifest(brats2021_root)
    write_nii(brats2021_root / CASE / f"{CASE}_t1.nii.gz", np.full((12, 14, 10), 5.0, np.float32))
    problems = _only_failure(check_manifest(m))
    assert len(problems) == 1 and "sha256 of t1 is" in problems[0]


def test_msd_channel_out_of_range(msd_root: Path, write_nii) -> None:
    m = build_manifest(msd_root, "msd")
    path = msd_root / "imagesTr" / "BRATS_002.nii.gz"
    write_nii(path, np.ones((12, 14, 10, 3), np.float32), nib.load(str(path)).affine)
    problems = _only_failure(check_manifest(m), "BRATS_002")
    assert problems == [f"{path}: channel 3 out of range: image has 3 channel(s)"]


def test_case_convention_overrides_manifest_default(brats2023_root: Path) -> None:
    m = build_manifest(brats2023_root, "brats2023")
    assert all(v.ok for v in check_manifest(m))
    m.cases[1].label_convention = "brats2021"  # value 3 is not a BraTS 2021 label
    problems = _only_failure(check_manifest(m), m.cases[1].id)
    assert len(problems) == 1 and "label values [3] are not allowed by convention 'brats2021'" in problems[0]


def test_unknown_backend_is_a_config_error(brats2021_root: Path) -> None:
    with pytest.raises(ConfigError, match="backend"):
        check_manifest(_folder_manifest(brats2021_root), backend="vtk")


def test_iter_verdicts_is_lazy_and_matches(brats2021_root: Path) -> None:
    m = _folder_manifest(brats2021_root)
    it = iter_verdicts(m)
    first = next(it)
    assert first.case_id == m.cases[0].id
    assert [first, *it] == check_manifest(m)


def test_format_verdicts() -> None:
    verdicts = [
        CaseVerdict("BraTS2021_00000", "train"),
        CaseVerdict("BraTS2021_00002", "val", ["a.nii.gz: first problem", "b.nii.gz: second problem"]),
        CaseVerdict("X", "unlabelled"),
    ]
    text = format_verdicts(verdicts)
    lines = text.splitlines()
    assert lines[0].split() == ["STATUS", "CASE", "SPLIT", "PROBLEMS"]
    assert lines[1].split() == ["OK", "BraTS2021_00000", "train"]
    assert lines[2].split() == ["FAIL", "BraTS2021_00002", "val", "a.nii.gz:", "first", "problem"]
    assert lines[3].split() == ["b.nii.gz:", "second", "problem"]
    assert lines[3].index("b.nii.gz") == lines[2].index("a.nii.gz")  # problems aligned in one column
    assert lines[4].split() == ["OK", "X", "unlabelled"]
    assert lines[5] == "3 case(s) checked: 2 OK, 1 with problems (2 problem(s))"
    assert summarize([]) == "0 case(s) checked: 0 OK, 0 with problems (0 problem(s))"
    assert CaseVerdict("a", "train").ok and not verdicts[1].ok
