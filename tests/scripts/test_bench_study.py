"""scripts/bench_study.py: the quick benchmark's JSON (unit counts that match its grid, clean units once against once
per cell, the same scores both ways, positive times; never timing comparisons), and its pure helpers: grids,
configs, unit counting, rates, table comparison and the clean-once summary; bad arguments exit 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from script_loader import load_script

from volrob.data.synth.generate import split_counts


def _script() -> ModuleType:
    return load_script("bench_study")


def _check_run(run: dict[str, Any], *, cases: int, cells: int, processes: int) -> None:
    assert run["processes"] == processes == run["world_size"]
    assert run["threads_per_process"] == {1: 2, 2: 1}[processes]
    assert f"OMP_NUM_THREADS={run['threads_per_process']} " in run["command"]
    assert ("torchrun --standalone --nproc-per-node 2" in run["command"]) == (processes == 2)
    assert run["status"] == "finished" and run["failed"] == 0
    assert run["attack_units"] == run["planned_attack_units"] == cases * cells
    assert run["clean_units"] == run["planned_clean_units"] == cases  # one model
    assert run["units"] == run["attack_units"] + run["clean_units"]
    assert len(run["per_rank"]) == processes
    assert sum(r["attack_units"] for r in run["per_rank"]) == run["attack_units"]
    assert sum(r["clean_units"] for r in run["per_rank"]) == run["clean_units"]
    assert run["wall_seconds"] > 0 and run["kernel_seconds"] > 0 and run["clean_seconds"] > 0
    assert run["units_per_hour"] > run["attack_units_per_hour"] > 0
    assert run["units_per_hour"] == pytest.approx(run["units"] * 3600 / run["wall_seconds"], rel=0.01)
    assert len(run["config"]["cases"]) == cases and len(run["config"]["attacks"]) == cells
    assert run["config"]["outputs"] == {"views": False} and len(run["loadavg_start"]) == 3


@pytest.mark.slow
def test_quick_benchmark_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--quick"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text)
    assert str(Path(__file__).resolve().parents[2]) not in text and "bench_study_" not in text  # no machine paths
    assert report["mode"] == "quick" and report["command"] == "python scripts/bench_study.py --quick"
    assert report["sizes"]["grids"] == [[2, 2]] and report["sizes"]["models"] == 1
    assert len(report["loadavg_start"]) == len(report["loadavg_end"]) == 3
    assert report["environment"]["cpu_count"] >= 1 and report["environment"]["torch"]
    assert report["setup"]["synth"]["seconds"] > 0 and report["setup"]["train"]["seconds"] > 0
    (grid,) = report["grids"]
    assert (grid["cases"], grid["cells"]) == (2, 2)
    for processes in (1, 2):
        _check_run(grid["runs"][str(processes)], cases=2, cells=2, processes=processes)
    assert grid["speedup_2_over_1"] > 0 and grid["kernel_speedup_2_over_1"] > 0
    assert isinstance(grid["tables_identical_1_vs_2"], bool) and isinstance(grid["scores_identical_1_vs_2"], bool)

    once = report["clean_once"]
    assert (once["cases"], once["cells"], once["models"]) == (2, 2, 1)
    assert once["all_cells_run"] == grid["runs"]["1"]["name"]
    assert once["clean_units_once"] == once["expected_clean_units_once"] == 2 * 1
    assert once["clean_units_single_cell_runs"] == once["expected_clean_units_single_cell_runs"] == 2 * 2 * 1
    assert once["attack_units_once"] == once["attack_units_single_cell_runs"] == 2 * 2
    assert once["attack_tables_identical"] and once["attack_scores_identical"] and once["clean_scores_identical"]
    assert once["attack_differing_columns"] == {} and once["attack_rows_compared"] > 0
    singles = once["single_cell_runs"]
    assert len(singles) == 2
    for single, cell in zip(singles, report["sizes"]["cells"][:2], strict=True):
        _check_run(single, cases=2, cells=1, processes=1)
        assert single["config"]["attacks"] == [cell]
    assert once["wall_seconds_single_cell_runs"] == pytest.approx(sum(s["wall_seconds"] for s in singles), abs=0.02)
    assert once["seconds_saved"] == pytest.approx(
        once["wall_seconds_single_cell_runs"] - once["wall_seconds_once"], abs=0.02)
    assert once["ratio_single_cell_runs_over_once"] == pytest.approx(
        once["wall_seconds_single_cell_runs"] / once["wall_seconds_once"], rel=0.01)
    assert once["clean_seconds_once"] > 0 and once["clean_seconds_single_cell_runs"] > 0


def test_grids_configs_and_splits() -> None:
    s = _script()
    assert s.parse_grid("4x2") == (4, 2) and s.parse_grid("8X4") == (8, 4)
    for bad in ("4", "4x5", "0x2", "ax2", "4x2x1"):
        with pytest.raises(s.ArgError):
            s.parse_grid(bad)
    assert s.run_order([(4, 4), (2, 2), (4, 2)]) == [(2, 2), (4, 2), (4, 4)]
    assert s.run_order([(2, 4), (4, 2), (1, 1)]) == [(1, 1), (4, 2), (2, 4)]  # part (b)'s grid (most cells) last
    cells = s.cells(3)
    assert [c["attack"] for c in cells] == ["fgsm", "pgd", "fgsm", "pgd"]
    assert all(len(c["eps"]) == 1 for c in cells) and cells[1]["options"] == {"steps": 3}
    cfg = s.run_config(["a", "b"], cells[:2])
    assert cfg["cases"] == ["a", "b"] and cfg["attacks"] == cells[:2] and cfg["outputs"] == {"views": False}
    assert not any(Path(p).is_absolute() for p in (cfg["manifest"], cfg["models"][0]["checkpoint"]))
    for max_cases in (1, 2, 4, 8, 16):
        total, val, test = s.synth_split(max_cases)
        assert split_counts(total, float(f"{val:.6f}"), float(f"{test:.6f}")) == (3, 1, max_cases)
    assert s.shown_command(["robustness", "c.yaml"], 2, 1) == (
        "OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m volrob robustness c.yaml")
    assert s.shown_command(["synth", "-o", "data"], 1, 2) == "OMP_NUM_THREADS=2 volrob synth -o data"
    env = s.child_env(1)
    assert env["OMP_NUM_THREADS"] == "1" and not set(env) & set(s.RANK_VARIABLES)


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def test_count_units_reads_the_run_folder(tmp_path: Path) -> None:
    _write(tmp_path / "run.json", {"status": "finished", "seconds": 4.5, "units": 2, "clean_units": 1,
                                   "world_size": 2, "failed": 0, "environment": {"torch": "x"}})
    for cell in ("c1", "c2"):
        _write(tmp_path / "units" / cell / "case1.json", {"seconds": 9.0})
    _write(tmp_path / "units" / "c1" / ".case2.json.tmp.json", {})  # an unfinished write is no unit
    _write(tmp_path / "clean" / "m" / "case1.json", {"seconds": 0.25, "rows": []})
    _write(tmp_path / "ranks" / "0.json", {"rank": 0, "units": ["c1/case1"], "clean_units": ["clean/m/case1"]})
    _write(tmp_path / "ranks" / "1.json", {"rank": 1, "units": ["c2/case1"], "clean_units": []})
    found = _script().count_units(tmp_path)
    assert found["attack_units"] == found["planned_attack_units"] == 2
    assert found["clean_units"] == found["planned_clean_units"] == 1
    assert found["clean_seconds"] == 0.25 and found["kernel_seconds"] == 4.5 and found["world_size"] == 2
    assert found["per_rank"] == [{"rank": 0, "attack_units": 1, "clean_units": 1},
                                 {"rank": 1, "attack_units": 1, "clean_units": 0}]


def _rows(**changes: list[Any]) -> pd.DataFrame:
    base = {"cell": ["c", "c"], "case": ["a", "a"], "model": ["m", "m"], "region": ["WT", "TC"],
            "metric": ["dice", "dice"], "clean": [0.5, float("nan")], "adversarial": [0.25, 0.0],
            "degradation": [0.25, 0.0], "ssim": [0.99, 0.99]}
    return pd.DataFrame({**base, **changes})


def test_compare_rows() -> None:
    compare = _script().compare_rows
    same = compare(_rows(), _rows())
    assert same == {"identical": True, "scores_identical": True, "rows": 2, "differing_columns": {}}
    ssim = compare(_rows(), _rows(ssim=[0.99, 0.9900001]))
    assert not ssim["identical"] and ssim["scores_identical"]
    assert ssim["differing_columns"]["ssim"] == pytest.approx(1e-7)
    scores = compare(_rows(), _rows(adversarial=[0.25, 0.5]))
    assert not scores["scores_identical"] and scores["differing_columns"] == {"adversarial": 0.5}
    moved = compare(_rows(), _rows(region=["TC", "WT"]))
    assert not moved["identical"] and not moved["scores_identical"] and moved["differing_columns"] is None
    assert not compare(_rows(), _rows().iloc[:1])["scores_identical"]


def _run(name: str, wall: float, attack: int, clean: int) -> dict[str, Any]:
    return {"name": name, "wall_seconds": wall, "kernel_seconds": wall / 2, "attack_units": attack,
            "clean_units": clean, "clean_seconds": 0.5 * clean}


def test_rates_and_summaries() -> None:
    s = _script()
    assert s.rates(1800.0, 6, 2) == {"units_per_hour": 16.0, "attack_units_per_hour": 12.0}
    same = {"identical": False, "scores_identical": True, "rows": 9, "differing_columns": {"ssim": 1e-7}}
    grid = s.grid_summary(_run("p1", 30.0, 4, 2), _run("p2", 20.0, 4, 2), same)
    assert grid["speedup_2_over_1"] == 1.5 and grid["kernel_speedup_2_over_1"] == 1.5
    assert not grid["tables_identical_1_vs_2"] and grid["scores_identical_1_vs_2"]
    singles = [_run("s0", 10.0, 2, 2), _run("s1", 12.0, 2, 2)]
    once = s.clean_once_summary(_run("all", 16.0, 4, 2), singles, cases=2, models=1,
                                same_attack={"identical": True, "scores_identical": True, "rows": 36,
                                             "differing_columns": {}}, same_clean=True)
    assert once["expected_clean_units_once"] == once["clean_units_once"] == 2
    assert once["expected_clean_units_single_cell_runs"] == once["clean_units_single_cell_runs"] == 4
    assert once["wall_seconds_single_cell_runs"] == 22.0 and once["seconds_saved"] == 6.0
    assert once["ratio_single_cell_runs_over_once"] == 1.375
    assert once["clean_seconds_once"] == 1.0 and once["clean_seconds_single_cell_runs"] == 2.0
    assert once["attack_scores_identical"] and once["clean_scores_identical"] and once["single_cell_runs"] == singles


@pytest.mark.parametrize("argv, words", [
    (["--grids", "2x9"], "--grids 2x9"),
    (["--grids", "2x2", "2x2"], "given twice"),
    (["--grids", "two"], "CASESxCELLS"),
    (["--bogus"], "--bogus"),
])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err and captured.out == ""


def test_a_workdir_that_is_not_empty_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "something").write_text("x")
    assert _script().main(["--quick", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --workdir") and "\n" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["something"]
