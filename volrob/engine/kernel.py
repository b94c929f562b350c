"""The kernel: every command's units of work run here.

``run_experiment(cfg, out, command=...)``:

1. joins torchrun's process group when there is one (:mod:`volrob.distributed`); each rank computes on its own
   device;
2. checks the output folder (:class:`~volrob.engine.store.RunStore`): empty, or an earlier run of the same command
   to resume; every finished unit with other parameters stops the run before any work;
3. expands the cells and units (:mod:`volrob.engine.cells`), estimates each unit's cost from timed passes
   (:mod:`volrob.engine.plan`), prints the plan and how long it should take, and gives every rank its share,
   largest units first;
4. runs this rank's units case by case — each case read and preprocessed once, each model's clean scores computed
   once — writing each unit atomically as it finishes; a case that cannot be read becomes failed units with the
   reason, and the rest go on;
5. waits for every rank; rank 0 merges the unit files into the tables (:mod:`volrob.engine.tables`), the
   derived tables, figures and sanity flags (:mod:`volrob.engine.outputs`), and ``run.json`` (with the metric set
   and every definition's parameters under ``scoring``).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from volrob import distributed
from volrob.data.manifest import load_manifest, split_cases
from volrob.engine import plan as planning
from volrob.engine.cases import CaseSource
from volrob.engine.cells import Cell, CleanUnit, Unit, clean_units, expand
from volrob.engine.config import RunConfig
from volrob.engine.models import ModelPool
from volrob.engine.progress import Progress, format_seconds
from volrob.engine.scoring import run_metric_set
from volrob.engine.store import RunStore
from volrob.engine.tables import Tables, merge
from volrob.engine.views import write_views
from volrob.engine.work import WorkContext, attack_params, attack_unit, clean_params, clean_unit, failed
from volrob.errors import DataError
from volrob.evaluation.controls import schedule_key
from volrob.report.figure import SYNTHETIC_NOTE, figure_note
from volrob.utils.config import to_plain
from volrob.utils.runtime import environment

PREPARE_S = 2.0
"""Allowance for reading and preprocessing one case (seconds), in cost estimates and shard assignment."""
LONG_RUN_S = 600.0
"""Runs estimated longer than this get a hint about trying a few cases first."""

ExtraCells = Callable[[RunConfig, ModelPool, RunStore, torch.device, Progress], list[Cell]]


@dataclass
class RunResult:
    """What a run produced (on rank 0; other ranks get ``tables=None``)."""

    out_dir: Path
    cfg: RunConfig
    cells: list[Cell]
    cases: list[str]
    computed: int
    reused: int
    tables: Tables | None = None
    outputs: Any = None
    estimate_seconds: float | None = None
    seconds: float = 0.0
    rank: int = 0
    world_size: int = 1
    pool: ModelPool | None = field(default=None, repr=False)

    @property
    def failed(self) -> int:
        return 0 if self.tables is None else len(self.tables.failures)


def _check_modalities(cfg: RunConfig, pool: ModelPool, cases: CaseSource) -> None:
    for name, src in pool.sources.items():
        if list(src.modalities) != list(cases.manifest.modalities):
            split_cases(cases.manifest, cfg.split, src.modalities)  # raises naming the manifest
            raise DataError(f"model {name} takes modalities {src.modalities}", path=cases.manifest.path)


def _plan_text(n_units: int, n_clean: int, todo: int, world: int, estimate: float | None) -> str:
    parts = [f"plan: {n_units} attack unit(s) + {n_clean} clean unit(s); {todo} to compute "
             f"({n_units + n_clean - todo} done earlier) on {world} process(es)"]
    if estimate is not None and todo:
        parts.append(f"estimated {format_seconds(estimate)} on this machine (from timed passes; a busy machine "
                     "takes longer)")
    return "; ".join(parts)


def run_experiment(cfg: RunConfig, out_dir: str | Path, *, command: str, progress: bool = True,
                   force: bool = False, extra_cells: ExtraCells | None = None,
                   echo: Callable[[str], None] = print) -> RunResult:
    """Run every missing unit of ``cfg`` into ``out_dir`` (see the module docstring)."""
    tic = time.perf_counter()
    manifest = load_manifest(cfg.manifest)
    metric_set = run_metric_set(cfg, manifest.label_convention)  # bad metrics fail before work
    note = SYNTHETIC_NOTE if manifest.layout == "synthetic" else None  # on every figure the run draws
    info, device = distributed.setup(cfg.device)
    store = RunStore(out_dir)
    if info.is_main or not force:
        store.open(command, force=force and info.is_main)
    distributed.barrier()
    pool = ModelPool(cfg, device)
    first = next(iter(pool.sources.values()))
    cases = CaseSource(cfg.manifest, cfg.split, first.modalities, cases=cfg.cases, max_cases=cfg.max_cases)
    _check_modalities(cfg, pool, cases)
    reporter = Progress(progress and (info.is_main or info.distributed),
                        prefix=f"[rank {info.rank}] " if info.distributed else "")
    extra = extra_cells(cfg, pool, store, device, reporter) if extra_cells is not None else []
    cells = expand(cfg, extra)
    for c in cells:
        if c.targets != (c.source,):
            pool.check_shared_space([c.source, *c.targets], "a transfer cell")
    evaluated = [m.name for m in cfg.models if not m.is_ensemble] if not cells else []
    ctx = WorkContext(cfg, pool, store, device, metric_set)
    plan = _pending(ctx, cases, cells, evaluated)
    units, cleans, params, stored = plan.units, plan.cleans, plan.params, plan.stored
    todo_units, todo_clean = plan.todo_units, plan.todo_clean
    n_todo = len(todo_clean) + len(todo_units)
    record = _record(command, cfg, info, cells, cases.ids, len(units), len(cleans), n_todo)
    record["models"] = _model_record(pool)
    record["scoring"] = ctx.metric_set.record()
    if info.is_main:
        store.write_json("run.json", {**record, "status": "running"})

    costs, estimate = _costs(cfg, pool, cases, cells, todo_units, todo_clean, device) if n_todo else ({}, None)
    if info.is_main:
        echo(_plan_text(len(units), len(cleans), n_todo, info.world_size,
                        None if estimate is None else estimate / info.world_size))
        if estimate is not None and estimate / info.world_size > LONG_RUN_S:
            echo("  (a long run: try it on a few cases first with --max-cases N or --cases ID,..., and spread it over "
                 "processes with torchrun; it resumes where it stops)")
    case_cost = {c: PREPARE_S + sum(costs.get(u.key, 0.0) for u in todo_clean if u.case == c) for c in cases.ids}
    mine_units, mine_clean = planning.assign(todo_units, todo_clean, costs, case_cost, info.world_size)[info.rank]
    _write_rank(store, info, device, mine_units, mine_clean)
    reporter.start(len(mine_units) + len(mine_clean), sum(costs.get(u.key, 1.0) for u in [*mine_units, *mine_clean]),
                   None if estimate is None else estimate / info.world_size)
    try:
        for case in [c for c in cases.ids if any(u.case == c for u in [*mine_units, *mine_clean])]:
            _run_case(ctx, cases, case, [u for u in mine_clean if u.case == case],
                      [u for u in mine_units if u.case == case], params, stored, costs, reporter)
    finally:
        reporter.close()
    distributed.barrier()
    with figure_note(note):
        write_views(ctx, cases, cells, echo=echo)  # each cell's worst case, shared over ranks; ends with a barrier
    result = RunResult(Path(out_dir), cfg, cells, cases.ids, n_todo, len(units) + len(cleans) - n_todo,
                       estimate_seconds=estimate, rank=info.rank, world_size=info.world_size, pool=pool)
    if info.is_main:
        from volrob.engine.outputs import write_outputs

        sha = {name: pool.sha(name) for name in [m.name for m in cfg.models]}
        result.tables = merge(store, cells, cases.ids, cfg.split, cleans, region=cfg.region, sha=sha)
        with figure_note(note):
            result.outputs = write_outputs(result, store)
        notes = case_notes(store, cleans, units)
        for line in notes["warnings"]:
            echo(f"warning: {line}")
        result.seconds = time.perf_counter() - tic
        store.write_json("run.json", {**record, "status": "finished", "seconds": round(result.seconds, 2),
                                      "computed_now": n_todo, "failed": result.failed,
                                      "estimate_seconds": estimate, **notes})
    distributed.barrier()
    return result


def run_complete(cfg: RunConfig, out_dir: str | Path, *, command: str, progress: bool = True,
                 echo: Callable[[str], None] = print) -> RunResult:
    """:func:`run_experiment` on one process, for callers that need every unit (documents made from a run): a
    :class:`~volrob.errors.DataError` naming the first failed unit when any failed (a rerun retries them)."""
    res = run_experiment(cfg, out_dir, command=command, progress=progress, echo=echo)
    assert res.tables is not None and res.outputs is not None  # one process: rank 0
    if not res.tables.failures.empty:
        first = res.tables.failures.iloc[0]
        raise DataError(f"{len(res.tables.failures)} unit(s) failed (failures.csv; a rerun retries them), first "
                        f"{first['unit']}: {first['reason']}", path=out_dir)
    return res


@dataclass
class Pending:
    """A run's units with their parameters, what earlier runs left of them, and what is still to compute."""

    units: list[Unit]
    cleans: list[CleanUnit]
    params: dict[str, dict[str, Any]]
    stored: dict[str, dict[str, Any] | None]
    todo_units: list[Unit]
    todo_clean: list[CleanUnit]


def _pending(ctx: WorkContext, cases: CaseSource, cells: list[Cell], evaluated: list[str]) -> Pending:
    """Every unit and clean unit of the run, checked against the unit files already in the folder (a finished unit
    with other parameters is an error naming it, before any work)."""
    store, cfg = ctx.store, ctx.cfg
    units = [Unit(c, case) for c in cells for case in cases.ids]
    cleans = clean_units(cells, evaluated, cases.ids)
    digests = {case: cases.entry_digest(case) for case in cases.ids}
    params = {u.key: clean_params(ctx, u, digests[u.case]) for u in cleans}
    params.update({u.key: attack_params(ctx, u, digests[u.case]) for u in units})
    stored = {u.key: store.check(store.clean_path(u.model, u.case), params[u.key], u.key) for u in cleans}
    stored.update({u.key: store.check(store.unit_path(u.cell.id, u.case), params[u.key], u.key) for u in units})
    todo_clean = [u for u in cleans if stored[u.key] is None or _needs_prediction(cfg, store, u)]
    todo_units = [u for u in units if stored[u.key] is None or set(u.cell.targets) - set(stored[u.key]["scores"])
                  or missing_outputs(cfg, store, u)]
    return Pending(units, cleans, params, stored, todo_units, todo_clean)


def missing_outputs(cfg: RunConfig, store: RunStore, u: Unit) -> bool:
    """Whether a finished unit lacks a file the run asks for (adversarial volumes or the perturbation)."""
    volumes = store.root / "adversarial" / u.cell.id / u.case / f"{u.case}_attack.json"
    return ((cfg.outputs.volumes and not volumes.is_file())
            or (cfg.outputs.perturbations and not store.delta_path(u.cell.id, u.case).is_file()))


def case_notes(store: RunStore, cleans: list[CleanUnit], units: list[Unit]) -> dict[str, Any]:
    """The cases whose label map is empty (scored under the empty policy) and those without a label (predicted and
    attacked, not scored), from the unit files, with one warning line per kind."""
    empty: set[str] = set()
    unlabelled: set[str] = set()
    paths = [store.clean_path(u.model, u.case) for u in cleans] + [store.unit_path(u.cell.id, u.case) for u in units]
    for path in paths:
        payload = store.read(path) or {}
        case = str(path.stem)
        if payload.get("label_empty"):
            empty.add(case)
        if payload.get("labelled") is False:
            unlabelled.add(case)
    warnings = []
    if empty:
        warnings.append(f"{len(empty)} case(s) have an empty label map (no tumour), scored under the empty policy "
                        f"(a model that predicts nothing there scores Dice 1): {', '.join(sorted(empty)[:10])}")
    if unlabelled:
        warnings.append(f"{len(unlabelled)} case(s) have no label: predicted and attacked (away from the model's own "
                        f"clean prediction), not scored; their label maps are under predictions/: "
                        f"{', '.join(sorted(unlabelled)[:10])}")
    return {"empty_label_cases": sorted(empty), "unlabelled_cases": sorted(unlabelled), "warnings": warnings}


def _needs_prediction(cfg: RunConfig, store: RunStore, u: CleanUnit) -> bool:
    path = store.root / "predictions" / u.model / f"{u.case}_pred.nii.gz"
    return cfg.outputs.predictions and cfg.roi_crop is None and not path.is_file()


def _record(command: str, cfg: RunConfig, info: distributed.DistInfo, cells: list[Cell], cases: list[str],
            n_units: int, n_clean: int, n_todo: int) -> dict[str, Any]:
    return {"command": command, "config": to_plain(cfg), "cases": cases,
            "cells": [c.spec() | {"targets": list(c.targets), "budget_key": c.budget_key, "budget": c.budget}
                      for c in cells],
            "units": n_units, "clean_units": n_clean, "to_compute": n_todo, "world_size": info.world_size,
            "environment": environment()}


def _model_record(pool: ModelPool) -> dict[str, Any]:
    """What each model of the run is: weights hash, where it came from, its effective window, the fast path that
    window resolves to on the run's device (precision, layout, compilation) and its preprocessing."""
    return {name: {"sha256": src.sha256, "defence": src.defence, "window": src.predictor.window.to_dict(),
                   "fast_path": src.predictor.fast_path(pool.device).describe(),
                   "preprocessing": src.preprocessing.to_dict(), "modalities": list(src.modalities),
                   "output_mode": src.predictor.output_mode,
                   "origin": {k: v for k, v in src.origin.items() if k != "provenance"},
                   "schedule": schedule_key(src.origin["provenance"]) if src.origin.get("provenance") else None}
            for name, src in pool.sources.items()}


def _costs(cfg: RunConfig, pool: ModelPool, cases: CaseSource, cells: list[Cell], units: list[Unit],
           cleans: list[CleanUnit], device: torch.device) -> tuple[dict[str, float], float]:
    """Estimated seconds per unit key (timed on rank 0, the same on every rank) and their sum."""
    timings = None
    if distributed.env_info().is_main:
        shape = _reference_shape(cases, pool)
        channels = len(cases.manifest.modalities)
        timings = {name: planning.time_model(src.predictor, channels, shape or src.predictor.window.roi_size, device)
                   for name, src in pool.sources.items()}
    timings = distributed.broadcast(timings)
    scorings = 1 + (len(cfg.bands.edges) - 1 if cfg.bands else 0)
    costs = {u.key: planning.clean_cost(u.model, timings) for u in cleans}
    for u in units:
        snapshots = len(u.cell.options.get("checkpoints") or [])
        costs[u.key] = planning.unit_cost(u.cell, pool.members(u.cell.source), timings, scorings + snapshots)
    total = sum(costs.values()) + PREPARE_S * len({u.case for u in [*units, *cleans]})
    return costs, total


def _reference_shape(cases: CaseSource, pool: ModelPool) -> tuple[int, ...] | None:
    """The preprocessed shape of the first readable case (None when none can be read)."""
    for case in cases.ids:
        try:
            return tuple(cases.prepare(case, next(iter(pool.sources.values())).preprocessing).x.shape[2:])
        except DataError:
            cases.release()
    return None


def _write_rank(store: RunStore, info: distributed.DistInfo, device: torch.device, units: list[Unit],
                cleans: list[CleanUnit]) -> None:
    store.write_json(f"ranks/{info.rank}.json", {
        "rank": info.rank, "world_size": info.world_size, "pid": os.getpid(), "host": socket.gethostname(),
        "device": str(device), "units": [u.key for u in units], "clean_units": [u.key for u in cleans]})


def _run_case(ctx: WorkContext, cases: CaseSource, case: str, cleans: list[CleanUnit], units: list[Unit],
              params: dict[str, dict[str, Any]], stored: dict[str, Any], costs: dict[str, float],
              reporter: Progress) -> None:
    """This rank's units of one case: the case is prepared once per preprocessing; a case that cannot be read
    turns every one of these units into a failed unit naming the reason."""
    store, pool = ctx.store, ctx.pool
    try:
        for u in cleans:
            with reporter.unit(u.key, costs.get(u.key, 1.0)):
                prepared = cases.prepare(case, pool.preprocessing(u.model))
                payload = _guarded(lambda u=u, prepared=prepared: clean_unit(ctx, u, prepared, params[u.key]),
                                   params[u.key])
                store.write(store.clean_path(u.model, u.case), payload)
        for u in units:
            with reporter.unit(u.key, costs.get(u.key, 1.0)) as tracker:
                prepared = cases.prepare(case, pool.preprocessing(u.cell.source))
                payload = _guarded(lambda u=u, prepared=prepared, tracker=tracker: attack_unit(
                    ctx, u, prepared, params[u.key], stored.get(u.key), tracker), params[u.key])
                store.write(store.unit_path(u.cell.id, u.case), payload)
    except DataError as err:
        reporter.write(f"case {case} failed: {err}")
        for u in cleans:
            if store.check(store.clean_path(u.model, u.case), params[u.key], u.key) is None:
                store.write(store.clean_path(u.model, u.case), failed(params[u.key], str(err)))
        for u in units:
            if store.check(store.unit_path(u.cell.id, u.case), params[u.key], u.key) is None:
                store.write(store.unit_path(u.cell.id, u.case), failed(params[u.key], str(err)))
    finally:
        cases.release()


def _guarded(compute: Callable[[], dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """``compute()``, or a failed payload when the device runs out of memory on this unit."""
    try:
        return compute()
    except torch.OutOfMemoryError as err:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return failed(params, f"out of memory: {str(err).splitlines()[0][:200]}")

