"""A resumable robustness grid: models × attacks × budgets, one :func:`attack_manifest` run per cell.

Layout of ``OUTDIR``: ``cells/<id>/`` (each cell's results.csv, summary.csv, run.json), then ``results.csv`` (all
cells' rows plus ``model_label``, ``cell``, ``budget_key``, ``budget``, ``eps``), ``summary.csv`` (per cell and
region: mean clean/adversarial Dice, relative Dice drop, mean HD95), ``grid.json`` (the config and the cells) and
``sanity.json`` (see :mod:`volrob.robustness.sanity`). With two or more models also ``comparison.csv`` and
``comparison.png`` (see :mod:`volrob.robustness.compare`) against ``reference`` (default: the only model with
``defended: false``; none when several or no models are undefended and no reference is named).

A cell's id is ``<model>__<attack>__<budget key><value>__<hash>``, where the hash covers the attack name and its
full options, so two cells with different options never share a folder. A cell is finished when its folder holds
results.csv and run.json; a finished cell whose recorded parameters (attack, options, split, seed, empty policy,
NSD tolerance, window overrides, checkpoint and manifest sha256) match is reused, a mismatch is an error naming
the cell, and an unfinished cell is recomputed.

Relative paths in the config (manifest, checkpoints) are resolved against the current working directory, like
the training configs; grid.json records the resolved paths.
"""

from __future__ import annotations

import inspect
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from volrob import attacks
from volrob.attacks.registry import ATTACKS
from volrob.data.manifest import load_manifest, sha256_file
from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import get_policy
from volrob.io import atomic_write_text
from volrob.report.compare_plot import plot_comparison
from volrob.robustness.attack_run import attack_manifest
from volrob.robustness.attack_spec import LABEL, AttackSpec, budgets, cell_id, check_attack
from volrob.robustness.compare import compare_models, defence_names, resolve_reference
from volrob.robustness.sanity import CELL_COLUMNS, SanityFlag, SanityThresholds, run_checks
from volrob.utils.config import apply_overrides, build_dataclass, read_yaml, to_plain

NOISE_ATTACKS = ("gaussian_noise",)
SUMMARY_COLUMNS = ["model_label", "attack", "cell", "budget_key", "budget", "eps", "region", "n", "clean_dice",
                   "adversarial_dice", "rel_dice_drop", "clean_hd95", "adversarial_hd95"]


@dataclass
class ModelSpec:
    """One model of the grid: ``name`` labels it in the results; ``defended`` exempts it from the collapse check."""

    name: str
    checkpoint: str
    defended: bool = False


@dataclass
class GridConfig:
    """The whole grid (YAML); see the module docstring for paths."""

    manifest: str = ""
    models: list[ModelSpec] = field(default_factory=list)
    attacks: list[AttackSpec] = field(default_factory=list)
    seed: int = 0
    split: str = "test"
    device: str = "auto"
    window: dict[str, Any] = field(default_factory=dict)
    empty_policy: str = "brats"
    nsd_tolerance_mm: float = 1.0
    sanity: SanityThresholds = field(default_factory=SanityThresholds)
    reference: str | None = None
    """Model the others are compared with (grids of two or more models); default: the only undefended one."""


@dataclass(frozen=True)
class Cell:
    """One unit of work: a model, an attack, its full options and the budget that distinguishes it."""

    id: str
    model: ModelSpec
    attack: str
    options: dict[str, Any]
    budget_key: str | None
    budget: Any
    window: dict[str, Any] = field(default_factory=dict)
    """Sliding-window overrides of this cell (the grid's, then the attack's)."""


def _entries(raw: Any, key: str, cls: type, required: Sequence[str]) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{key}: expected a non-empty list")
    out = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping, got {item!r}")
        missing = [k for k in required if k not in item]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {missing}")
        out.append(build_dataclass(cls, item, where))
    return out


def parse_config(data: dict[str, Any]) -> GridConfig:
    """A validated :class:`GridConfig` from a mapping (paths resolved against the working directory)."""
    if not isinstance(data, dict):
        raise ConfigError("grid config: top level must be a mapping")
    for key in ("manifest", "models", "attacks"):
        if key not in data:
            raise ConfigError(f"grid config: missing key {key!r}")
    rest = {k: v for k, v in data.items() if k not in ("models", "attacks")}
    cfg = build_dataclass(GridConfig, rest)
    cfg.models = _entries(data["models"], "models", ModelSpec, ("name", "checkpoint"))
    cfg.attacks = _entries(data["attacks"], "attacks", AttackSpec, ("attack",))
    cfg.manifest = str(Path(cfg.manifest).resolve())
    if not Path(cfg.manifest).is_file():
        raise ConfigError(f"manifest: file does not exist: {cfg.manifest}")
    get_policy(cfg.empty_policy)
    labels = [m.name for m in cfg.models]
    for i, m in enumerate(cfg.models):
        if not LABEL.match(m.name) or "__" in m.name:
            raise ConfigError(f"models[{i}].name: {m.name!r} must be letters, digits, '_', '.', '-' without '__'")
        if m.name in labels[:i]:
            raise ConfigError(f"models[{i}].name: {m.name!r} is used twice")
        m.checkpoint = str(Path(m.checkpoint).resolve())
        if not Path(m.checkpoint).is_file():
            raise ConfigError(f"models[{i}].checkpoint: file does not exist: {m.checkpoint}")
    for i, a in enumerate(cfg.attacks):
        check_attack(a, f"attacks[{i}]")
    if cfg.reference is not None:
        resolve_reference(cfg.models, cfg.reference)
    expand_cells(cfg)  # ids must be unique
    return cfg


def load_grid_config(path: str | Path, overrides: Sequence[str] = ()) -> GridConfig:
    """Read, override (``key.sub=value``) and validate a grid config file; errors name the file."""
    data = apply_overrides(read_yaml(path), overrides)
    try:
        return parse_config(data)
    except ConfigError as err:
        raise ConfigError(str(err), path=path) from None


def expand_cells(cfg: GridConfig) -> list[Cell]:
    """Every model × attack × budget, in config order; ids are unique."""
    cells = []
    for model in cfg.models:
        for a in cfg.attacks:
            for key, value in budgets(a):
                opts = {**a.options, **({key: value} if key else {})}
                cells.append(Cell(cell_id(model.name, a.attack, opts, key, value, a.window), model, a.attack, opts,
                                  key, value, {**cfg.window, **a.window}))
    ids = [c.id for c in cells]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"attacks: the same attack and options appear twice (cell {dup[0]})")
    return cells


def _expected(cfg: GridConfig, cell: Cell, manifest_sha: str, checkpoint_sha: str) -> dict[str, Any]:
    return {"attack": cell.attack, "attack_options": cell.options, "split": cfg.split, "seed": cfg.seed,
            "empty_policy": cfg.empty_policy, "nsd_tolerance_mm": cfg.nsd_tolerance_mm,
            "checkpoint_sha256": checkpoint_sha, "manifest_sha256": manifest_sha}


def cell_state(cfg: GridConfig, cell: Cell, folder: Path, manifest_sha: str, checkpoint_sha: str) -> str:
    """``done`` (finished, same parameters) or ``todo``; a finished cell with other parameters is a ConfigError."""
    run_path = folder / "run.json"
    if not (folder / "results.csv").is_file() or not run_path.is_file():
        return "todo"
    try:
        run = json.loads(run_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "todo"
    want = _expected(cfg, cell, manifest_sha, checkpoint_sha)
    diff = sorted(k for k, v in want.items() if to_plain(run.get(k)) != to_plain(v))
    diff += sorted(f"window.{k}" for k, v in cell.window.items() if to_plain(run.get("window", {}).get(k)) != v)
    if diff:
        raise ConfigError(f"cell {cell.id} was computed with other parameters ({', '.join(diff)}); delete that "
                          "folder or choose another output folder", path=folder)
    return "done"


def _kind(attack: str) -> str:
    return "noise" if attack in NOISE_ATTACKS else "gradient"


def cell_table(cfg: GridConfig, cells: Sequence[Cell]) -> pd.DataFrame:
    """One row per cell with what the sanity checks need (see :data:`~volrob.robustness.sanity.CELL_COLUMNS`)."""
    rows = []
    for c in cells:
        atk = attacks.create(c.attack, **c.options, seed=cfg.seed)
        steps = atk.params().get("steps")
        eps = c.options.get("eps", atk.threat.eps if "eps" in _signature(c.attack) else None)
        rows.append({"cell": c.id, "model_label": c.model.name, "defended": c.model.defended, "attack": c.attack,
                     "kind": _kind(c.attack), "targeted": bool(atk.targeted), "budget_key": c.budget_key,
                     "budget": _number(c.budget), "eps": _number(eps), "steps": _number(steps),
                     "options": json.dumps(c.options, sort_keys=True),
                     "window": json.dumps(c.window, sort_keys=True)})
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def _signature(attack: str) -> set[str]:
    return set(inspect.signature(ATTACKS.entry(attack).builder).parameters)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def summarise_grid(results: pd.DataFrame) -> pd.DataFrame:
    """Per cell and region: mean clean/adversarial Dice, relative Dice drop, mean clean/adversarial HD95."""
    out = []
    keys = ["model_label", "attack", "cell", "budget_key", "budget", "eps", "region"]
    for k, g in results.groupby(keys, sort=False, dropna=False):
        d, h = g[g["metric"] == "dice"], g[g["metric"] == "hd95"]
        clean, adv = float(d["clean"].mean()), float(d["adversarial"].mean())
        out.append({**dict(zip(keys, k, strict=True)), "n": len(d), "clean_dice": clean, "adversarial_dice": adv,
                    "rel_dice_drop": (clean - adv) / clean if clean > 0 else 0.0,
                    "clean_hd95": float(h["clean"].mean()), "adversarial_hd95": float(h["adversarial"].mean())})
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


@dataclass
class GridResult:
    """Combined rows, summary, sanity flags, which cells were computed now, and the output folder."""

    results: pd.DataFrame
    summary: pd.DataFrame
    flags: list[SanityFlag]
    computed: list[str]
    out_dir: Path
    comparison: pd.DataFrame | None = None
    """The defence comparison (grids of two or more models), also in comparison.csv / comparison.png."""


RunCell = Callable[..., Any]


def run_grid(cfg: GridConfig, out_dir: str | Path, *, progress: bool = True,
             run_cell: RunCell = attack_manifest) -> GridResult:
    """Run every unfinished cell into ``out_dir/cells/<id>``, then write the combined tables and sanity flags."""
    out = Path(out_dir)
    cells = expand_cells(cfg)
    table = cell_table(cfg, cells)
    manifest_sha = load_manifest(cfg.manifest).digest()
    shas = {m.name: sha256_file(m.checkpoint) for m in cfg.models}
    states = {c.id: cell_state(cfg, c, out / "cells" / c.id, manifest_sha, shas[c.model.name])
              for c in cells}  # every finished cell is checked before any work
    computed = []
    for c in tqdm(cells, desc="grid", unit="cell", disable=not progress, dynamic_ncols=True):
        if states[c.id] == "done":
            continue
        folder = out / "cells" / c.id
        run_cell(c.model.checkpoint, cfg.manifest, folder, attack=c.attack, attack_options=c.options,
                 split=cfg.split, seed=cfg.seed, device=cfg.device, window=c.window or None,
                 empty_policy=cfg.empty_policy, nsd_tolerance_mm=cfg.nsd_tolerance_mm, save_volumes=False,
                 force=(folder / "results.csv").exists(), progress=False)
        computed.append(c.id)
    frames, losses = [], {}
    for c, meta in zip(cells, table.to_dict("records"), strict=True):
        folder = out / "cells" / c.id
        df = pd.read_csv(folder / "results.csv")
        df.insert(0, "model_label", c.model.name)
        df.insert(1, "cell", c.id)
        for col in ("budget_key", "budget", "eps"):
            df[col] = meta[col]
        frames.append(df)
        records = json.loads((folder / "run.json").read_text(encoding="utf-8")).get("records", {})
        losses[c.id] = [list(r.get("loss", [])) + list(r.get("final_loss", [])) for r in records.values()]
    results = pd.concat(frames, ignore_index=True)
    summary = summarise_grid(results)
    flags = run_checks(results, table, losses, cfg.sanity)
    for name, frame in (("results.csv", results), ("summary.csv", summary)):
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        atomic_write_text(out / name, buf.getvalue())
    grid = {"config": to_plain(cfg), "cells": [{"id": c.id, "model": c.model.name, "attack": c.attack,
                                                "options": c.options, "window": c.window,
                                                "budget_key": c.budget_key,
                                                "budget": c.budget, "computed_now": c.id in computed}
                                               for c in cells]}
    atomic_write_text(out / "grid.json", json.dumps(grid, indent=2, default=str) + "\n")
    atomic_write_text(out / "sanity.json", json.dumps([f.to_dict() for f in flags], indent=2, default=str) + "\n")
    reference = resolve_reference(cfg.models, cfg.reference) if len(cfg.models) > 1 else None
    comparison = write_comparison(cfg, results, out, reference) if reference is not None else None
    return GridResult(results, summary, flags, computed, out, comparison)


def write_comparison(cfg: GridConfig, results: pd.DataFrame, out: Path, reference: str) -> pd.DataFrame:
    """comparison.csv and comparison.png (WT) of a multi-model grid against ``reference``; returns the table."""
    table = compare_models(results, defence_names(cfg.models), reference, seed=cfg.seed)
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    atomic_write_text(out / "comparison.csv", buf.getvalue())
    plot_comparison(table, out / "comparison.png")
    return table
