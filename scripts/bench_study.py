"""How a study's cost grows with its size, and what computing clean scores once saves: real engine runs on CPU.

Every measurement is one ``volrob robustness`` command (the engine's white-box grid,
:func:`volrob.engine.kernel.run_experiment`), started as its own process into its own fresh run folder, on synthetic
cases from ``volrob synth`` and a tiny UNet trained for 2 epochs (1 with ``--quick``) with ``volrob train`` (ROI
32³). Cases and model are made first, in the work folder; their times are recorded under ``setup`` and are part of
no measurement.

**a. Units of work per hour against the size of the study.** For each grid ``CASESxCELLS`` (full mode: 2x2, 4x2
and 4x4; ``--quick``: 2x2), smallest first, one run on 2 processes with 1 thread each (``OMP_NUM_THREADS=1
torchrun --standalone --nproc-per-node 2 -m volrob robustness ... --threads 1``; gloo) and then one on 1 process
with 2 threads (``OMP_NUM_THREADS=2 volrob robustness ... --threads 2``, no torchrun). Each run records its wall
seconds (the whole command: interpreter start, imports, model loading, the plan's timed passes, the units, the
merged tables), the kernel's own seconds (``run.json``), its attack units (one per cell and case) and clean units
(one per model and case) counted from the unit files of the run folder next to the counts of the plan, units per
hour of wall time (all units, and attack units alone), how many units each process computed (``ranks/``), and
the load average when it started. Per grid, ``speedup_2_over_1`` is the wall time on 1 process over that on 2
(``kernel_speedup_2_over_1`` the same for the kernel's seconds), and the two runs' ``results.csv`` are compared
without their ``seconds`` column: ``tables_identical_1_vs_2``, ``scores_identical_1_vs_2`` (clean, adversarial,
degradation) and ``differing_columns_1_vs_2`` with the largest difference of each column that differs. The two
runs use different thread counts, so float32 reductions (SSIM, PSNR) may differ in their last bits.

**b. Clean scores computed once.** A run of N attack cells computes each model's clean prediction of each case once
and shares it between its cells; the obvious alternative, N runs of one cell each over the same cases, model and
seed, computes them N times. The all-cells run is the 1-process run of the grid of (a) with the most cells (then the
most cases), which runs last; the N single-cell runs follow it, each on 1 process with 2 threads. ``clean_once``
gives both wall times, the clean units each way (counted from ``clean/<model>/<case>.json``) next to what they must
be (cases × models once, cells × cases × models in single-cell runs), the seconds the clean units themselves took
each way (their unit files), the kernels' seconds, the wall seconds saved and the ratio, and an honest cross-check:
the rows of the all-cells run against the concatenated rows of the single-cell runs (``results.csv`` without
``seconds``; same seed, same thread count: the same table), and every clean unit's scores each way
(``clean_scores_identical``).

Cells, in order (a grid of N cells takes the first N): FGSM at eps 8, PGD (5 steps; 2 with ``--quick``) at eps
8, FGSM at eps 4, PGD at eps 4 (1/255 units). Views (each cell's worst case crafted again and drawn) are switched
off in every run (``outputs.views: false``): they are a per-cell extra, not units of work. Volumes are 64³ (48³
with ``--quick``), one model, seed 0. The JSON records the load average (1, 5, 15 minutes) at the start and at the
end, the core count, the versions the runs report, every command and every run config (paths relative to the work
folder): times taken on a loaded machine are not comparable across runs (with other jobs on the cores, a process
with 2 threads can take several times longer than on an idle machine).

Usage: python scripts/bench_study.py [--quick] [--grids 2x2 4x2 ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import yaml

REPO = Path(__file__).resolve().parents[1]
ROI = 32
"""The model's sliding-window ROI (each side, voxels)."""
MODEL = "unet"
"""The one model of every run (its name in the run configs)."""
SEED = 0
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                  "GROUP_RANK", "TORCHELASTIC_RUN_ID")
THREADS = {1: 2, 2: 1}
"""Intra-op threads per process for 1 and for 2 processes (2 cores in all)."""
RUN_TIMEOUT_S = 1800.0


class Mode(NamedTuple):
    """Sizes of one mode of the benchmark."""

    name: str
    grids: tuple[tuple[int, int], ...]
    shape: tuple[int, int, int]
    pgd_steps: int
    train_epochs: int = 2


FULL = Mode("full", ((2, 2), (4, 2), (4, 4)), (64, 64, 64), pgd_steps=5)
QUICK = Mode("quick", ((2, 2),), (48, 48, 48), pgd_steps=2, train_epochs=1)


class ArgError(Exception):
    """A bad command-line argument; ``str(err)`` is one line."""


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose errors raise :class:`ArgError` (one line, no usage block) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise ArgError(message)


def cells(pgd_steps: int) -> list[dict[str, Any]]:
    """The attack cells in the order grids take them: one ``attacks`` entry (a single budget) each."""
    pgd = {"steps": pgd_steps}
    return [{"attack": "fgsm", "eps": [8]}, {"attack": "pgd", "options": pgd, "eps": [8]},
            {"attack": "fgsm", "eps": [4]}, {"attack": "pgd", "options": dict(pgd), "eps": [4]}]


def parse_grid(text: str) -> tuple[int, int]:
    """``"4x2"`` as (cases, cells); cells at most the number of cells there are, cases at least 1."""
    parts = text.lower().split("x")
    try:
        cases, n_cells = (int(p) for p in parts)
    except ValueError:
        raise ArgError(f"--grids: expected CASESxCELLS such as 4x2, got {text!r}") from None
    if cases < 1 or not 1 <= n_cells <= len(cells(1)):
        raise ArgError(f"--grids {text}: cases must be >= 1 and cells between 1 and {len(cells(1))}")
    return cases, n_cells


def run_config(cases: Sequence[str], attacks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run config of one measurement (paths relative to the work folder, where every run starts)."""
    return {"seed": SEED, "split": "test", "cases": list(cases), "device": "cpu",
            "manifest": "data/manifest.json", "models": [{"name": MODEL, "checkpoint": "model/best.pt"}],
            "attacks": [dict(a) for a in attacks], "outputs": {"views": False}}


def train_config(epochs: int) -> dict[str, Any]:
    """The tiny UNet every run attacks: ``epochs`` epochs on the synthetic training cases, ROI 32³."""
    return {"seed": SEED, "output_dir": "model", "model": {"name": MODEL, "preset": "tiny"},
            "data": {"manifest": "data/manifest.json"},
            "train": {"epochs": epochs, "batch_size": 2, "crops_per_case": 2, "lr": 0.01, "val_every": 1,
                      "device": "cpu"},
            "inference": {"roi_size": [ROI] * 3, "overlap": 0.25, "sw_batch_size": 4}}


def synth_split(max_cases: int) -> tuple[int, float, float]:
    """(cases, val_fraction, test_fraction) of ``volrob synth`` for ``max_cases`` test cases, one validation case
    and three training cases."""
    total = max_cases + 4
    return total, 1 / total, max_cases / total


def volrob_command(args: Sequence[str], processes: int) -> list[str]:
    """The ``volrob`` command line as run: ``python -m volrob`` or, for several processes,
    ``python -m torch.distributed.run --standalone --nproc-per-node N -m volrob`` (what ``torchrun`` runs)."""
    if processes == 1:
        return [sys.executable, "-m", "volrob", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), "-m",
            "volrob", *args]


def shown_command(args: Sequence[str], processes: int, threads: int) -> str:
    """The same command as a reader would type it (``volrob`` / ``torchrun``; no machine paths)."""
    head = ["volrob"] if processes == 1 else ["torchrun", "--standalone", "--nproc-per-node", str(processes), "-m",
                                              "volrob"]
    return f"OMP_NUM_THREADS={threads} " + shlex.join([*head, *args])


def child_env(threads: int) -> dict[str, str]:
    """This process's environment without torchrun's variables, with ``threads`` OpenMP/MKL threads and the
    repository first on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES}
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def log(text: str) -> None:
    print(f"[bench_study] {text}", file=sys.stderr, flush=True)


def run_volrob(work: Path, args: Sequence[str], *, processes: int = 1, threads: int = 2) -> float:
    """Run ``volrob *args`` in ``work``; its wall seconds. A failure raises with the command's last lines."""
    tic = time.perf_counter()
    try:
        done = subprocess.run(volrob_command(args, processes), cwd=work, env=child_env(threads), capture_output=True,
                              text=True, timeout=RUN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{shown_command(args, processes, threads)} ran past {RUN_TIMEOUT_S:.0f} s") from None
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{shown_command(args, processes, threads)} exited with {done.returncode}: {tail}")
    return seconds


def count_units(run_dir: Path) -> dict[str, Any]:
    """What a finished run folder holds: attack units (``units/<cell>/<case>.json``), clean units
    (``clean/<model>/<case>.json``), the seconds its clean units took, each process's share (``ranks/``), and from
    ``run.json`` the units the plan counted, the kernel's seconds and the failures."""
    def files(folder: str) -> list[Path]:
        return sorted(p for p in (run_dir / folder).glob("*/*.json") if not p.name.startswith("."))

    cleans = files("clean")
    record = json.loads((run_dir / "run.json").read_text())
    ranks = [json.loads(p.read_text()) for p in sorted((run_dir / "ranks").glob("*.json"), key=lambda p: int(p.stem))]
    return {"attack_units": len(files("units")), "clean_units": len(cleans),
            "clean_seconds": round(sum(float(json.loads(p.read_text()).get("seconds", 0.0)) for p in cleans), 3),
            "planned_attack_units": int(record["units"]), "planned_clean_units": int(record["clean_units"]),
            "kernel_seconds": float(record["seconds"]), "failed": int(record.get("failed", 0)),
            "status": record.get("status"), "world_size": int(record.get("world_size", 1)),
            "per_rank": [{"rank": r["rank"], "attack_units": len(r["units"]), "clean_units": len(r["clean_units"])}
                         for r in ranks],
            "environment": record.get("environment", {})}


def rates(wall_seconds: float, attack_units: int, clean_units: int) -> dict[str, float]:
    """Units of work per hour of wall time: all units, and attack units alone."""
    hours = wall_seconds / 3600.0
    return {"units_per_hour": round((attack_units + clean_units) / hours, 1),
            "attack_units_per_hour": round(attack_units / hours, 1)}


def measure(work: Path, name: str, cfg: dict[str, Any], processes: int) -> dict[str, Any]:
    """One run of ``cfg`` on ``processes`` processes into the fresh folder ``runs/<name>``: its record."""
    threads = THREADS[processes]
    config_path = Path("configs") / f"{name}.yaml"
    (work / config_path).parent.mkdir(parents=True, exist_ok=True)
    (work / config_path).write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = Path("runs") / name
    if (work / out).exists():
        raise RuntimeError(f"run folder {out} exists already; every run needs a fresh one")
    args = ["robustness", str(config_path), "-o", str(out), "--threads", str(threads), "--quiet"]
    load = [round(v, 2) for v in os.getloadavg()]
    wall = run_volrob(work, args, processes=processes, threads=threads)
    found = count_units(work / out)
    record = {"name": name, "processes": processes, "threads_per_process": threads,
              "command": shown_command(args, processes, threads), "config": cfg, "loadavg_start": load,
              "wall_seconds": round(wall, 2), **{k: v for k, v in found.items() if k != "environment"},
              "units": found["attack_units"] + found["clean_units"],
              **rates(wall, found["attack_units"], found["clean_units"])}
    log(f"{name}: {record['wall_seconds']} s wall, kernel {record['kernel_seconds']} s, "
        f"{record['attack_units']} attack + {record['clean_units']} clean units")
    return record | {"environment": found["environment"]}


def result_rows(run_dir: Path) -> Any:
    """``results.csv`` of a run without the columns that measure the machine."""
    import pandas as pd

    from volrob.engine.tables import TIME_COLUMNS

    return pd.read_csv(run_dir / "results.csv").drop(columns=list(TIME_COLUMNS), errors="ignore")


SCORE_COLUMNS = ("clean", "adversarial", "degradation", "rel_degradation")
"""The columns that hold a model's scores (the others describe the perturbation or where a row comes from)."""


def compare_rows(a: Any, b: Any) -> dict[str, Any]:
    """Two result tables compared: ``identical`` (every value, the order and the types), ``scores_identical`` (the
    same rows with exactly the same :data:`SCORE_COLUMNS`), and ``differing_columns``, each column whose values
    differ with its largest absolute difference (NaN in both counts as equal; None for a non-numeric column or
    rows that do not line up)."""
    import numpy as np
    import pandas as pd

    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        identical = True
    except AssertionError:
        identical = False
    keys = [c for c in ("cell", "case", "model", "region", "metric") if c in a.columns]
    aligned = (list(a.columns) == list(b.columns) and len(a) == len(b)
               and bool((a[keys].astype(str).to_numpy() == b[keys].astype(str).to_numpy()).all()))
    differing: dict[str, float | None] = {}
    for col in a.columns if aligned else []:
        x, y = a[col], b[col]
        if x.equals(y):
            continue
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            u, v = x.to_numpy(float), y.to_numpy(float)
            gap = np.where(np.isnan(u) & np.isnan(v), 0.0, np.abs(u - v))
            differing[col] = float(np.nanmax(gap)) if np.isnan(gap).sum() == 0 else None
        else:
            differing[col] = None
    scores_same = aligned and not any(c in differing for c in SCORE_COLUMNS)
    return {"identical": identical, "scores_identical": scores_same, "rows": len(a),
            "differing_columns": differing if aligned else None}


def clean_rows(run_dir: Path) -> dict[str, Any]:
    """Every clean unit's scores, keyed ``<model>/<case>``."""
    return {f"{p.parent.name}/{p.stem}": json.loads(p.read_text())["rows"]
            for p in sorted((run_dir / "clean").glob("*/*.json")) if not p.name.startswith(".")}


def grid_summary(one: dict[str, Any], two: dict[str, Any], same: dict[str, Any]) -> dict[str, Any]:
    """One grid's entry: both runs, the speed-ups of 2 processes over 1, and the comparison of their tables."""
    return {"speedup_2_over_1": round(one["wall_seconds"] / two["wall_seconds"], 3),
            "kernel_speedup_2_over_1": round(one["kernel_seconds"] / two["kernel_seconds"], 3),
            "tables_identical_1_vs_2": same["identical"], "scores_identical_1_vs_2": same["scores_identical"],
            "differing_columns_1_vs_2": same["differing_columns"],
            "runs": {"1": one, "2": two}}


def clean_once_summary(all_cells: dict[str, Any], singles: list[dict[str, Any]], *, cases: int, models: int,
                       same_attack: dict[str, Any], same_clean: bool) -> dict[str, Any]:
    """Part (b): one run of every cell against one run per cell (see the module docstring)."""
    n = len(singles)
    single_wall = sum(r["wall_seconds"] for r in singles)
    return {
        "cases": cases, "cells": n, "models": models,
        "expected_clean_units_once": cases * models, "expected_clean_units_single_cell_runs": n * cases * models,
        "clean_units_once": all_cells["clean_units"],
        "clean_units_single_cell_runs": sum(r["clean_units"] for r in singles),
        "attack_units_once": all_cells["attack_units"],
        "attack_units_single_cell_runs": sum(r["attack_units"] for r in singles),
        "wall_seconds_once": all_cells["wall_seconds"], "wall_seconds_single_cell_runs": round(single_wall, 2),
        "seconds_saved": round(single_wall - all_cells["wall_seconds"], 2),
        "ratio_single_cell_runs_over_once": round(single_wall / all_cells["wall_seconds"], 3),
        "kernel_seconds_once": all_cells["kernel_seconds"],
        "kernel_seconds_single_cell_runs": round(sum(r["kernel_seconds"] for r in singles), 2),
        "clean_seconds_once": all_cells["clean_seconds"],
        "clean_seconds_single_cell_runs": round(sum(r["clean_seconds"] for r in singles), 3),
        "attack_tables_identical": same_attack["identical"], "attack_scores_identical": same_attack["scores_identical"],
        "attack_rows_compared": same_attack["rows"], "attack_differing_columns": same_attack["differing_columns"],
        "clean_scores_identical": same_clean,
        "all_cells_run": all_cells["name"], "single_cell_runs": singles,
    }


def setup(work: Path, mode: Mode, max_cases: int) -> tuple[dict[str, Any], list[str]]:
    """Synthesise the cases and train the model in ``work``; the setup record and the test cases (manifest order)."""
    total, val, test = synth_split(max_cases)
    synth_args = ["synth", "-o", "data", "--cases", str(total), "--shape", *map(str, mode.shape), "--seed",
                  str(SEED), "--val-fraction", f"{val:.6f}", "--test-fraction", f"{test:.6f}"]
    synth_s = run_volrob(work, synth_args)
    manifest = json.loads((work / "data" / "manifest.json").read_text())
    cases = [c["id"] for c in manifest["cases"] if c["split"] == "test"]
    if len(cases) < max_cases:
        raise RuntimeError(f"volrob synth made {len(cases)} test cases, {max_cases} needed")
    log(f"synthesised {total} cases {'x'.join(map(str, mode.shape))} in {synth_s:.1f} s")
    train = train_config(mode.train_epochs)
    (work / "train.yaml").write_text(yaml.safe_dump(train, sort_keys=False))
    train_args = ["train", "train.yaml", "--quiet"]
    train_s = run_volrob(work, train_args)
    log(f"trained the tiny {MODEL} in {train_s:.1f} s")
    record = {"synth": {"command": shown_command(synth_args, 1, 2), "seconds": round(synth_s, 2), "cases": total},
              "train": {"command": shown_command(train_args, 1, 2), "config": train, "seconds": round(train_s, 2)}}
    return record, cases


def run_order(grids: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The grids in the order they run: smallest first (cases × cells), except that the grid of part (b), the one
    with the most cells (then the most cases), runs last, so its 1-process run comes right before the single-cell
    runs."""
    ordered = sorted(grids, key=lambda g: (g[0] * g[1], g))
    last = max(grids, key=lambda g: (g[1], g[0]))
    ordered.remove(last)
    return [*ordered, last]


def benchmark(work: Path, mode: Mode, command: str) -> dict[str, Any]:
    """Every measurement of ``mode`` in the (empty) folder ``work``: the JSON report."""
    tic = time.perf_counter()
    load_start = [round(v, 2) for v in os.getloadavg()]
    all_cells = cells(mode.pgd_steps)
    max_cases = max(c for c, _ in mode.grids)
    setup_record, test_cases = setup(work, mode, max_cases)
    grids = []
    ordered = run_order(mode.grids)
    last_one: dict[str, Any] = {}
    for n_cases, n_cells in ordered:
        cfg = run_config(test_cases[:n_cases], all_cells[:n_cells])
        name = f"grid_{n_cases}x{n_cells}"
        two = measure(work, f"{name}_p2", cfg, 2)  # 2 processes first: the 1-process run of the last grid is then
        one = measure(work, f"{name}_p1", cfg, 1)  # right before the single-cell runs of part (b)
        same = compare_rows(result_rows(work / "runs" / one["name"]), result_rows(work / "runs" / two["name"]))
        environment = one.pop("environment")
        two.pop("environment")
        grids.append({"cases": n_cases, "cells": n_cells, **grid_summary(one, two, same)})
        last_one = one
    n_cases, n_cells = ordered[-1]
    singles = [measure(work, f"single_{n_cases}x{n_cells}_cell{i}", run_config(test_cases[:n_cases], [a]), 1)
               for i, a in enumerate(all_cells[:n_cells])]
    for r in singles:
        r.pop("environment")
    import pandas as pd

    joined = pd.concat([result_rows(work / "runs" / r["name"]) for r in singles], ignore_index=True)
    same_attack = compare_rows(result_rows(work / "runs" / last_one["name"]), joined)
    once = clean_rows(work / "runs" / last_one["name"])
    same_clean = all(clean_rows(work / "runs" / r["name"]) == once for r in singles)
    clean_once = clean_once_summary(last_one, singles, cases=n_cases, models=1, same_attack=same_attack,
                                    same_clean=same_clean)
    return {
        "benchmark": "study cost against size; clean scores computed once", "mode": mode.name, "command": command,
        "sizes": {"shape": list(mode.shape), "roi": [ROI] * 3, "models": 1,
                  "model": {"name": MODEL, "preset": "tiny", "train_epochs": mode.train_epochs},
                  "grids": [list(g) for g in ordered], "pgd_steps": mode.pgd_steps, "cells": all_cells, "seed": SEED,
                  "views": False},
        "threads": {"1_process": {"OMP_NUM_THREADS": THREADS[1], "--threads": THREADS[1]},
                    "2_processes": {"OMP_NUM_THREADS": THREADS[2], "--threads": THREADS[2], "backend": "gloo"}},
        "setup": setup_record, "grids": grids, "clean_once": clean_once,
        "environment": {"cpu_count": os.cpu_count(), **environment},
        "loadavg_start": load_start, "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "seconds_total": round(time.perf_counter() - tic, 1),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="one 2x2 grid on 48^3 volumes, 2-step PGD (for tests)")
    ap.add_argument("--grids", nargs="+", metavar="CASESxCELLS",
                    help="grids to measure instead of the mode's (cells at most 4); part (b) uses the one with the "
                         "most cells (then the most cases)")
    ap.add_argument("--workdir", type=Path,
                    help="keep data, model, configs and run folders here (new or empty; default: a temporary "
                         "folder, removed afterwards)")
    args = ap.parse_args(argv)
    if args.grids is not None:
        grids = tuple(parse_grid(g) for g in args.grids)
        if len(set(grids)) != len(grids):
            raise ArgError(f"--grids: a grid is given twice: {' '.join(args.grids)}")
        args.grids = grids
    if args.workdir is not None and args.workdir.exists() and (not args.workdir.is_dir()
                                                               or any(args.workdir.iterdir())):
        raise ArgError(f"--workdir {args.workdir}: must be a new or empty folder")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except ArgError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    mode = QUICK if args.quick else FULL
    if args.grids is not None:
        mode = Mode(mode.name + "+grids", args.grids, mode.shape, mode.pgd_steps, mode.train_epochs)
    command = shlex.join(["python", "scripts/bench_study.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            report = benchmark(args.workdir.resolve(), mode, command)
        else:
            with tempfile.TemporaryDirectory(prefix="bench_study_") as tmp:
                report = benchmark(Path(tmp), mode, command)
    except RuntimeError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
