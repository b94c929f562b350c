"""``volrob robustness``: a white-box grid run — its tables and records, resume (only missing or broken units are
computed, finished ones are left alone), finished units with other parameters stop the run naming the unit, the
per-attack window reaches crafting only, sanity flags on the command line, and the defence comparison."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from volrob.cli.main import main
from volrob.engine import work
from volrob.engine.cells import Cell
from volrob.engine.tables import RESULT_COLUMNS, SUMMARY_COLUMNS, TIME_COLUMNS
from volrob.evaluation.sanity import CHECKS

ATTACKS = [{"attack": "fgsm", "eps": [4]}, {"attack": "pgd", "options": {"steps": 2}, "eps": [8]},
           {"attack": "gaussian_noise", "eps": [8]},
           {"attack": "pgd", "options": {"steps": 2}, "eps": [8], "window": {"gradient": "tiles"}}]
RUN_WINDOW = {"sw_batch_size": 2}


@dataclass
class Seen:
    """What the instrumented run saw: per crafted unit its cell and the crafting predictor's window, and the
    window of every scoring predictor."""

    crafted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    scoring: list[dict[str, Any]] = field(default_factory=list)


def instrument(mp: pytest.MonkeyPatch, seen: Seen) -> None:
    """Record every attack run (its cell and crafting window) and every scoring pass; the real code does the work."""
    create, score = Cell.create_attack, work.score_on_source

    def create_attack(cell: Cell, seed: int) -> Any:
        atk = create(cell, seed)
        run = atk.run

        def recorded(predictor: Any, *args: Any, **kwargs: Any) -> Any:
            seen.crafted.append((cell.id, predictor.window.to_dict()))
            return run(predictor, *args, **kwargs)

        atk.run = recorded
        return atk

    def scoring(predictor: Any, *args: Any, **kwargs: Any) -> Any:
        seen.scoring.append(predictor.window.to_dict())
        return score(predictor, *args, **kwargs)

    mp.setattr(Cell, "create_attack", create_attack)
    mp.setattr(work, "score_on_source", scoring)


@dataclass
class Grid:
    config: Path
    out: Path
    seen: Seen
    cells: list[str]
    case: str


def _robustness(config: Path, out: Path, *args: str) -> int:
    return main(["robustness", str(config), "-o", str(out), "--threads", "1", "--quiet", *args])


@pytest.fixture(scope="module")
def grid(tiny_checkpoint: Path, synth_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    root = tmp_path_factory.mktemp("grid")
    config = root / "grid.yaml"
    config.write_text(yaml.safe_dump({"seed": 0, "split": "val", "manifest": str(synth_manifest),
                                      "window": RUN_WINDOW, "models": [{"name": "tiny", "checkpoint":
                                                                        str(tiny_checkpoint)}],
                                      "attacks": ATTACKS}))
    seen, threads = Seen(), torch.get_num_threads()
    try:
        with pytest.MonkeyPatch.context() as mp:
            instrument(mp, seen)
            assert _robustness(config, root / "out") == 0
    finally:
        torch.set_num_threads(threads)
    run = json.loads((root / "out" / "run.json").read_text())
    yield Grid(config, root / "out", seen, [c["cell"] for c in run["cells"]], run["cases"][0])


@pytest.fixture()
def copy(grid: Grid, tmp_path: Path) -> Path:
    """A copy of the finished grid to resume or break."""
    shutil.copytree(grid.out, tmp_path / "out")
    return tmp_path / "out"


def _files(out: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(out.rglob("*")) if p.is_file()}


def _results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").drop(columns=list(TIME_COLUMNS))


def test_tables_and_records(grid: Grid) -> None:
    results = pd.read_csv(grid.out / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS and len(grid.cells) == 4
    assert list(dict.fromkeys(results["cell"])) == grid.cells  # config order
    assert (results["model"] == "tiny").all() and results["white_box"].all()
    assert len(results) == 4 * 9 and sorted(results["eps"].unique()) == [4.0, 8.0]
    assert grid.cells[0].startswith("tiny__fgsm__eps4__") and grid.cells[1].startswith("tiny__pgd__eps8__")
    summary = pd.read_csv(grid.out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS and len(summary) == 4 * 3 * 3
    wt = results[(results.metric == "dice") & (results.region == "WT") & (results.cell == grid.cells[1])]
    row = summary[(summary.cell == grid.cells[1]) & (summary.region == "WT") & (summary.metric == "dice")].iloc[0]
    assert row.adversarial_mean == pytest.approx(wt["adversarial"].mean()) and row.n == 1
    run = json.loads((grid.out / "run.json").read_text())
    assert run["command"] == "robustness" and run["status"] == "finished" and run["config"]["split"] == "val"
    assert run["units"] == 4 and run["clean_units"] == 1 and run["computed_now"] == 5
    sanity = json.loads((grid.out / "sanity.json").read_text())
    assert [f["name"] for f in sanity] == [c for c in CHECKS if c != "blackbox_stronger_than_whitebox"]
    assert all(f["meaning"] and f["advice"] for f in sanity)
    for cell in grid.cells:
        unit = json.loads((grid.out / "units" / cell / f"{grid.case}.json").read_text())
        assert unit["status"] == "ok" and unit["params"]["cell"] == cell and list(unit["scores"]) == ["tiny"]
    assert (grid.out / "clean" / "tiny" / f"{grid.case}.json").is_file()
    assert not (grid.out / "adversarial").exists() and not (grid.out / "comparison.csv").exists()


def test_per_attack_window_reaches_crafting_only(grid: Grid) -> None:
    crafted = dict(grid.seen.crafted)
    # each unit crafted once, then each cell's worst case once more for its view (a grid keeps no perturbation),
    # with the same crafting window
    assert sorted(crafted) == sorted(grid.cells) and len(grid.seen.crafted) == 4 + 4
    assert all(crafted[cell] == window for cell, window in grid.seen.crafted)
    tiles, exact = grid.cells[3], grid.cells[1]
    assert crafted[tiles]["gradient"] == "tiles" and crafted[exact]["gradient"] == "exact"
    assert all(w["sw_batch_size"] == RUN_WINDOW["sw_batch_size"] for w in crafted.values())  # the run window too
    assert len(grid.seen.scoring) == 1 + 4  # the clean input once, each unit once
    assert all(w["gradient"] == "exact" and w["sw_batch_size"] == 2 for w in grid.seen.scoring)
    results = pd.read_csv(grid.out / "results.csv").set_index("cell")
    assert json.loads(results.loc[tiles, "params"].iloc[0]) == json.loads(results.loc[exact, "params"].iloc[0])


@pytest.mark.usefixtures("one_thread")
def test_resume_computes_only_missing_or_broken_units(grid: Grid, copy: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    units = {c: copy / "units" / c / f"{grid.case}.json" for c in grid.cells}
    units[grid.cells[0]].unlink()  # missing
    units[grid.cells[1]].write_text("{not json")  # interrupted mid-write by something other than volrob
    failed = json.loads(units[grid.cells[2]].read_text())
    units[grid.cells[2]].write_text(json.dumps({"params": failed["params"], "status": "failed", "reason": "oom"}))
    kept = _files(copy)
    seen = Seen()
    instrument(monkeypatch, seen)
    assert _robustness(grid.config, copy) == 0
    assert sorted(c for c, _ in seen.crafted) == sorted(grid.cells[:3])
    assert len(seen.scoring) == 3  # the clean unit is reused from disk, not scored again
    after = _files(copy)
    for name in (f"units/{grid.cells[3]}/{grid.case}.json", f"clean/tiny/{grid.case}.json"):
        assert after[name] == kept[name]  # untouched: same bytes, same modification time
    pd.testing.assert_frame_equal(_results(copy), _results(grid.out))  # same seeds, same numbers
    assert json.loads((copy / "run.json").read_text())["computed_now"] == 3


@pytest.mark.usefixtures("one_thread")
def test_finished_units_with_other_parameters_stop_the_run(grid: Grid, copy: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    seen = Seen()
    instrument(monkeypatch, seen)
    before = _files(copy)
    assert _robustness(grid.config, copy, "--set", "seed=1") == 2
    err = capsys.readouterr().err.strip()
    assert f"unit {grid.cells[0]}/{grid.case} was computed with other parameters (seed)" in err
    assert "--force" in err and str(copy) in err and len(err.splitlines()) == 1
    path = copy / "units" / grid.cells[3] / f"{grid.case}.json"
    unit = json.loads(path.read_text())
    unit["params"]["options"]["steps"] = 3  # as if another attack had been run under this cell's name
    path.write_text(json.dumps(unit))
    before[str(path.relative_to(copy))] = (path.read_bytes(), path.stat().st_mtime_ns)
    assert _robustness(grid.config, copy) == 2
    err = capsys.readouterr().err
    assert f"unit {grid.cells[3]}/{grid.case} was computed with other parameters (options.steps)" in err
    assert seen.crafted == [] and seen.scoring == []  # stopped before any work
    assert _files(copy) == before  # and wrote nothing


@pytest.mark.usefixtures("one_thread")
def test_command_line_prints_flags_and_fails_on_them(grid: Grid, copy: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _robustness(grid.config, copy) == 0  # flags alone never fail a run
    text = capsys.readouterr().out
    assert "4 cell(s) x 1 case(s), 0 unit(s) computed now" in text and "WT Dice" in text
    raised = [f["name"] for f in json.loads((copy / "sanity.json").read_text()) if f["raised"]]
    assert all(f"!! SANITY FLAG: {name}:" in text for name in raised)
    assert ("sanity checks: all clear" in text) == (not raised)
    # thresholds are read when the tables are made: changing them recomputes no unit
    assert _robustness(grid.config, copy, "--set", "sanity.loss_atol=1000.0", "--fail-on-flags") == 1
    text = capsys.readouterr().out
    assert "0 unit(s) computed now" in text and "!! SANITY FLAG: zero_gradient:" in text and "what to try" in text
    flags = {f["name"]: f for f in json.loads((copy / "sanity.json").read_text())}
    assert flags["zero_gradient"]["raised"] and set(flags["zero_gradient"]["cells"]) == {
        grid.cells[0], grid.cells[1], grid.cells[3]}  # the gradient attacks, not the noise
    lenient = ["--set", "sanity.collapse_ratio=100.0", "--set", "sanity.tolerance=100.0", "--fail-on-flags"]
    code = _robustness(grid.config, copy, *lenient)
    raised = [f["name"] for f in json.loads((copy / "sanity.json").read_text()) if f["raised"]]
    assert code == (1 if raised else 0) and "no_collapse_at_max_budget" not in raised
    capsys.readouterr()
    for change, word in (("transfer=true", "volrob transfer"), ("attacks=[]", "no attacks")):
        assert _robustness(grid.config, copy, "--set", change) == 2
        err = capsys.readouterr().err.strip()
        assert word in err and len(err.splitlines()) == 1


@pytest.mark.usefixtures("one_thread")
def test_two_models_are_compared_with_the_reference(tiny_checkpoint: Path, second_checkpoint: Path,
                                                    synth_manifest: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump({
        "split": "train", "max_cases": 2, "manifest": str(synth_manifest),
        "models": [{"name": "plain", "checkpoint": str(tiny_checkpoint)},
                   {"name": "jittered", "checkpoint": str(second_checkpoint), "defended": True}],
        "attacks": [{"attack": "gaussian_noise", "eps": [8]}]}))
    assert _robustness(config, tmp_path / "out") == 0
    assert "comparison against 'plain'" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert set(table["model"]) == {"plain", "jittered"} and (table["reference"] == "plain").all()
    assert (table["defence"] == "none").all()  # read from the checkpoints' provenance: neither was trained robust
    assert (table["n"] == 2).all() and (tmp_path / "out" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    wt = results[(results.model == "jittered") & (results.region == "WT") & (results.metric == "dice")]
    row = table[(table.model == "jittered") & (table.region == "WT")].iloc[0]
    assert row["adversarial_dice"] == pytest.approx(wt["adversarial"].mean())
    assert _robustness(config, tmp_path / "out", "--set", "reference=jittered") == 0
    assert (pd.read_csv(tmp_path / "out" / "comparison.csv")["reference"] == "jittered").all()
