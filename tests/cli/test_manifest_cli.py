"""``volrob manifest build|check`` through ``volrob.cli.main.main``: outputs, exit codes 0 / 1 / 2, no overwrites."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import volrob.cli.main as cli
from volrob.data.manifest import load_manifest

AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


@pytest.fixture(autouse=True)
def _only_manifest_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", ("manifest",))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Three tiny BraTS 2021 cases written with nibabel."""
    root = tmp_path / "data" / "BraTS2021_Training_Data"
    rng = np.random.default_rng(0)
    for cid in ("BraTS2021_00000", "BraTS2021_00002", "BraTS2021_00003"):
        (root / cid).mkdir(parents=True)
        for mod in ("t1", "t1ce", "t2", "flair"):
            vol = rng.uniform(0, 500, size=(8, 9, 7)).astype(np.float32)
            nib.save(nib.Nifti1Image(vol, AFFINE), str(root / cid / f"{cid}_{mod}.nii.gz"))
        seg = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(8, 9, 7))
        nib.save(nib.Nifti1Image(seg, AFFINE), str(root / cid / f"{cid}_seg.nii.gz"))
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _build(capsys: pytest.CaptureFixture[str], root: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _run(capsys, "manifest", "build", str(root), "--layout", "brats2021", "-o", str(out), *extra)


def test_build_writes_manifest_and_summary(capsys, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "manifests" / "brats.json"
    code, stdout, stderr = _build(capsys, dataset, out, "--val-fraction", "0.34", "--hash", "--seed", "3")
    assert (code, stderr) == (0, "")
    assert stdout.count("\n") == 1
    assert stdout.startswith(f"wrote {out}: 3 brats2021 cases (train 2, val 1, test 0, unlabelled 0)")
    assert "root ../data/BraTS2021_Training_Data" in stdout and "with sha256" in stdout
    m = load_manifest(out)
    assert m.root == "../data/BraTS2021_Training_Data" and m.root_dir == dataset.resolve()
    assert all(len(c.sha256) == 5 for c in m.cases)
    assert sorted(p.name for p in out.parent.iterdir()) == ["brats.json"]


def test_build_never_overwrites_without_force(capsys, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    assert _build(capsys, dataset, out, "--seed", "1")[0] == 0
    before = out.read_bytes()
    code, stdout, stderr = _build(capsys, dataset, out, "--seed", "2", "--val-fraction", "0.67")
    assert code == 2 and stdout == ""
    assert stderr == f"volrob manifest: error: {out}: output file already exists; pass --force to overwrite it\n"
    assert out.read_bytes() == before
    code, _, _ = _build(capsys, dataset, out, "--seed", "2", "--val-fraction", "0.67", "--force")
    assert code == 0
    assert sum(c.split == "val" for c in load_manifest(out).cases) == 2


def test_build_bad_input_is_one_line_exit_2(capsys, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "m.json"
    code, stdout, stderr = _build(capsys, empty, out)
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"volrob manifest: error: {empty}: no brats2021 cases found") and stderr.count("\n") == 1
    assert not out.exists()
    code, _, stderr = _build(capsys, empty, out, "--val-fraction", "0.8", "--test-fraction", "0.8")
    assert code == 2 and "val_fraction + test_fraction must be <= 1" in stderr


def test_check_exit_codes(capsys, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    _build(capsys, dataset, out, "--hash")
    code, stdout, stderr = _run(capsys, "manifest", "check", str(out))
    assert (code, stderr) == (0, "")
    lines = stdout.splitlines()
    assert [ln.split()[:2] for ln in lines[:3]] == [["OK", "BraTS2021_00000"], ["OK", "BraTS2021_00002"],
                                                    ["OK", "BraTS2021_00003"]]
    assert lines[-1] == "3 case(s) checked: 3 OK, 0 with problems (0 problem(s))"
    assert _run(capsys, "manifest", "check", str(out), "--backend", "sitk")[0] == 0

    # A valid image with new content: only the hash notices.
    t1 = dataset / "BraTS2021_00002" / "BraTS2021_00002_t1.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 9, 7), np.float32), AFFINE), str(t1))
    code, stdout, _ = _run(capsys, "manifest", "check", str(out))
    assert code == 1
    assert f"{t1}: sha256 of t1 is" in stdout
    assert stdout.splitlines()[-1] == "3 case(s) checked: 2 OK, 1 with problems (1 problem(s))"
    assert _run(capsys, "manifest", "check", str(out), "--no-hash")[0] == 0

    seg = dataset / "BraTS2021_00003" / "BraTS2021_00003_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 9, 7), 3, np.uint8), AFFINE), str(seg))
    code, stdout, _ = _run(capsys, "manifest", "check", str(out), "--no-hash")
    assert code == 1
    assert f"{seg}: label values [3] are not allowed by convention 'brats2021'" in stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "manifest file does not exist"),
        ("{broken", "not valid JSON"),
        (json.dumps({"format": "volrob-manifest", "version": 1, "label_convention": "brats2021", "cases": []}),
         "cases: must be a non-empty list"),
    ],
)
def test_check_unparseable_manifest_exit_2(capsys, tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    code, stdout, stderr = _run(capsys, "manifest", "check", str(path))
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"volrob manifest: error: {path}: ") and message in stderr
    assert stderr.count("\n") == 1


def test_argument_errors_and_help(capsys) -> None:
    for argv in (["manifest"], ["manifest", "build", "x", "--layout", "brats2021", "-o", "m.json",
                                "--val-fraction", "2"], ["manifest", "build", "x", "--layout", "kits", "-o", "m"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(["manifest", "check", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 when every case passes, 1 when any case has a problem, 2" in text
    with pytest.raises(SystemExit):
        cli.main(["manifest", "build", "--help"])
    assert "never overwritten unless --force" in " ".join(capsys.readouterr().out.split())


def test_check_warns_about_an_empty_label_map(capsys, dataset: Path, tmp_path: Path) -> None:
    """An empty label is readable and valid, so the case passes (exit 0), but the check names it as a warning."""
    out = tmp_path / "m.json"
    _build(capsys, dataset, out)
    seg = dataset / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 7), np.uint8), AFFINE), str(seg))
    code, stdout, stderr = _run(capsys, "manifest", "check", str(out))
    assert (code, stderr) == (0, "")
    lines = stdout.splitlines()
    warned = next(ln for ln in lines if "BraTS2021_00002" in ln)
    assert warned.split()[0] == "WARN"
    assert f"warning: {seg}: label map is empty (no tumour)" in warned
    assert [ln.split()[0] for ln in lines[:3]].count("OK") == 2
    assert lines[-1] == ("3 case(s) checked: 3 OK, 0 with problems (0 problem(s)); 1 with warnings "
                         "(BraTS2021_00002)")
