"""The run writer: the overwrite guard, resume, a unit computed with other parameters, --force, and a case that
cannot be read becoming failed units while the others go on (and a rerun retrying them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from volrob.cli.main import main
from volrob.engine.store import RunStore, differences
from volrob.errors import ConfigError


def test_differences_are_dotted_keys() -> None:
    assert differences({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}, "e": 0}) == ["b.c", "b.d", "e"]
    assert differences({"x": [1, 2]}, {"x": [1, 2]}) == []


def test_guard(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "new")
    store.open("attack", force=False)  # a folder that does not exist yet is fine
    (tmp_path / "new").mkdir()
    store.write_json("run.json", {"command": "evaluate"})
    with pytest.raises(ConfigError, match="already holds a evaluate run; use --force"):
        store.open("attack", force=False)
    store.open("evaluate", force=False)  # the same command resumes
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not empty and holds no volrob run"):
        RunStore(other).open("attack", force=False)
    (other / "units").mkdir()
    (other / "results.csv").write_text("x")
    RunStore(other).open("attack", force=True)  # --force removes only what a run writes
    assert (other / "notes.txt").read_text() == "keep me"
    assert not (other / "units").exists() and not (other / "results.csv").exists()


def test_unreadable_unit_is_recomputed_and_other_parameters_are_an_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    path = store.unit_path("cell", "case")
    assert store.check(path, {"a": 1}, "cell/case") is None  # missing
    path.parent.mkdir(parents=True)
    path.write_text("{truncated")
    assert store.check(path, {"a": 1}, "cell/case") is None  # unreadable
    store.write(path, {"params": {"a": 1}, "status": "failed", "reason": "x"})
    assert store.check(path, {"a": 1}, "cell/case") is None  # failed: retried
    store.write(path, {"params": {"a": 1, "b": {"c": 2}}, "status": "ok"})
    assert store.check(path, {"a": 1, "b": {"c": 2}}, "cell/case")["status"] == "ok"
    with pytest.raises(ConfigError, match=r"unit cell/case was computed with other parameters \(b.c\)"):
        store.check(path, {"a": 1, "b": {"c": 3}}, "cell/case")


def _attack(manifest: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    return main(["attack", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--split", "train",
                 "--attack", "fgsm", "--eps", "4", "-o", str(out), "--no-volumes", "--quiet", "--threads", "1", *extra])


@pytest.mark.usefixtures("one_thread")
def test_resume_mismatch_and_force(synth_manifest: Path, tiny_checkpoint: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _attack(synth_manifest, tiny_checkpoint, out, "--max-cases", "2") == 0
    first = pd.read_csv(out / "results.csv")
    units = sorted((out / "units").rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in units]
    assert len(units) == 2 and first["case"].nunique() == 2
    assert _attack(synth_manifest, tiny_checkpoint, out) == 0  # two more cases: only those are computed
    assert [p.stat().st_mtime_ns for p in units] == stamps
    assert pd.read_csv(out / "results.csv")["case"].nunique() == 4
    assert json.loads((out / "run.json").read_text())["computed_now"] == 2 * 2  # two attack + two clean units
    capsys.readouterr()
    assert _attack(synth_manifest, tiny_checkpoint, out, "--seed", "1") == 2  # other parameters: refused
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "computed with other parameters (seed)" in err and "use --force" in err
    assert [p.stat().st_mtime_ns for p in units] == stamps  # nothing lost
    assert _attack(synth_manifest, tiny_checkpoint, out, "--seed", "1", "--force") == 0
    assert (pd.read_csv(out / "results.csv")["seed"] != first["seed"].iloc[0]).all()


@pytest.mark.usefixtures("one_thread")
def test_an_unreadable_case_fails_alone_and_is_retried(synth_manifest: Path, tiny_checkpoint: Path,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_manifest.parent, data)
    manifest = json.loads((data / "manifest.json").read_text())
    bad = next(c for c in manifest["cases"] if c["split"] == "train")
    bad_file = data / bad["images"]["t1ce"]
    kept = bad_file.read_bytes()
    bad_file.write_bytes(kept[: len(kept) // 3])  # a truncated NIfTI
    out = tmp_path / "out"
    assert _attack(data / "manifest.json", tiny_checkpoint, out) == 1  # finished, but incomplete
    text = capsys.readouterr().out
    assert "2 unit(s) could not be computed" in text
    failures = pd.read_csv(out / "failures.csv")
    assert set(failures["case"]) == {bad["id"]} and len(failures) == 2  # its clean unit and its attack unit
    assert all(str(bad_file.name) in r for r in failures["reason"])
    results = pd.read_csv(out / "results.csv")
    assert results["case"].nunique() == 3 and bad["id"] not in set(results["case"])
    bad_file.write_bytes(kept)  # repaired: a rerun computes only the failed units
    assert _attack(data / "manifest.json", tiny_checkpoint, out) == 0
    assert pd.read_csv(out / "results.csv")["case"].nunique() == 4 and not (out / "failures.csv").exists()
    assert json.loads((out / "run.json").read_text())["computed_now"] == 2
