"""Units of work sharded over processes with torchrun (gloo, CPU): the merged tables equal a single process's,
every unit is computed once, and a run whose rank was killed with SIGKILL completes on a rerun with the same
tables."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.torchrun import start, torchrun

from volrob.cli.main import main
from volrob.engine.tables import TIME_COLUMNS

TABLES = ("results.csv", "summary.csv", "matrices.csv", "bands.csv")


def _config(path: Path, manifest: Path, first: Path, second: Path, **extra: object) -> Path:
    cfg = {"seed": 0, "split": "train", "manifest": str(manifest), "device": "cpu",
           "models": [{"name": "m1", "checkpoint": str(first)}, {"name": "m2", "checkpoint": str(second)}],
           "attacks": [{"attack": "fgsm", "eps": [4]}, {"attack": "pgd", "options": {"steps": 2}, "eps": [8]}],
           "bands": {"edges": [0.0, 0.2, 1.0]}, **extra}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(out / name).drop(columns=list(TIME_COLUMNS), errors="ignore") for name in TABLES}


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


@pytest.fixture(scope="module")
def reference(tiny_checkpoint: Path, second_checkpoint: Path, synth_manifest: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pd.DataFrame]]:
    """The transfer run in one process (one thread): its config and tables."""
    root = tmp_path_factory.mktemp("one_process")
    cfg = _config(root / "transfer.yaml", synth_manifest, tiny_checkpoint, second_checkpoint)
    assert main(["transfer", str(cfg), "-o", str(root / "out"), "--threads", "1", "--quiet"]) == 0
    return cfg, _tables(root / "out")


def test_two_ranks_merge_to_the_single_process_tables(reference: tuple[Path, dict[str, pd.DataFrame]],
                                                      tmp_path: Path) -> None:
    cfg, expected = reference
    out = tmp_path / "out"
    done = torchrun("transfer", str(cfg), "-o", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results in") == 1  # rank 0 alone prints the tables
    _assert_same(_tables(out), expected)
    ranks = [json.loads((out / "ranks" / f"{r}.json").read_text()) for r in (0, 1)]
    units = [u for r in ranks for u in r["units"]]
    assert all(r["world_size"] == 2 for r in ranks) and all(r["units"] for r in ranks)  # both ranks worked
    assert len(units) == len(set(units)) == 4 * 4  # 4 cells (2 sources x 2 attacks) x 4 train cases, each once
    cleans = [u for r in ranks for u in r["clean_units"]]
    assert sorted(cleans) == sorted(f"clean/{m}/{c}" for m in ("m1", "m2")
                                    for c in pd.read_csv(out / "results.csv")["case"].unique())
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["world_size"] == 2


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_rerun_after_a_killed_rank_completes_with_the_same_tables(
        reference: tuple[Path, dict[str, pd.DataFrame]], tmp_path: Path) -> None:
    cfg, expected = reference
    out = tmp_path / "out"
    proc = start("transfer", str(cfg), "-o", str(out), "--quiet")
    try:
        rank_file = out / "ranks" / "1.json"
        _wait_for(rank_file.is_file, 240, "rank 1 to receive its units")
        mine = json.loads(rank_file.read_text())
        first = out / "units" / Path(mine["units"][0]).parent / f"{Path(mine['units'][0]).name}.json"
        _wait_for(first.is_file, 240, "rank 1's first unit")
        os.kill(mine["pid"], signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not (out / "results.csv").exists()  # the run did not finish
    finished = [p for folder in ("units", "clean") for p in (out / folder).rglob("*.json")
                if not p.name.startswith(".")]
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    assert any(p.parts[-3] == "units" for p in finished) and len(finished) < 16 + 8

    done = torchrun("transfer", str(cfg), "-o", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same(_tables(out), expected)
    assert all(p.stat().st_mtime_ns == stamps[p] for p in finished)  # finished units were not recomputed
    run = json.loads((out / "run.json").read_text())
    assert run["computed_now"] == 16 + 8 - len(finished)  # only the missing units ran
