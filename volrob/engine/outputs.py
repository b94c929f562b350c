"""Everything rank 0 derives from a run's merged tables, whatever command ran it.

- an evaluation (no attack cells): ``results.csv`` (clean scores) and ``summary.csv`` (statistics per model,
  region and metric);
- an attack run: ``results.csv`` and ``summary.csv`` (:mod:`volrob.engine.tables`), ``sanity.json`` (the grid
  checks on the white-box rows, and with transfer the black-box check: one flag schema,
  :mod:`volrob.evaluation.sanity`); with snapshots ``queries.csv`` and ``queries.png``; with band analysis
  ``bands.csv``, ``bands_summary.csv`` and ``bands/*.png``; in a transfer run ``matrices.csv`` and one heatmap per
  attack and budget in ``heatmaps/``; in a white-box run of two or more models with a reference, the defence
  comparison ``comparison.csv`` / ``comparison.png``;
- ``failures.csv`` when units failed.

``results.csv`` is written last: it marks the tables complete.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from volrob.attacks.base import Attack
from volrob.attacks.noise import GaussianNoise
from volrob.engine.cells import Cell
from volrob.engine.config import RunConfig
from volrob.engine.store import RunStore
from volrob.engine.tables import summarise
from volrob.evaluation.compare import compare_models, resolve_reference
from volrob.evaluation.sanity import CELL_COLUMNS, SanityFlag, blackbox_stronger, run_checks
from volrob.evaluation.summary import summarize
from volrob.evaluation.transfer_matrix import transfer_matrices
from volrob.report.labels import budget_text

if TYPE_CHECKING:
    from volrob.engine.kernel import RunResult

@dataclass
class Outputs:
    """The derived tables and the figures written."""

    summary: pd.DataFrame
    flags: list[SanityFlag] = field(default_factory=list)
    matrices: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None
    figures: list[Path] = field(default_factory=list)


def _slug(*parts: Any) -> str:
    """A file name from ``parts`` (missing parts skipped, floats as ``8`` not ``8.0``)."""
    text = "_".join(f"{p:g}" if isinstance(p, float) else str(p) for p in parts if p is not None and p == p)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _kind(atk: Attack) -> str:
    """The sanity checks' kind of an attack: ``gradient``, ``query``, ``noise`` (random noise of the budget) or
    ``fixed`` (a given perturbation)."""
    if atk.model_access == "gradient":
        return "gradient"
    if atk.model_access == "queries":
        return "query"
    return "noise" if isinstance(atk, GaussianNoise) else "fixed"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def cell_table(cfg: RunConfig, cells: list[Cell]) -> pd.DataFrame:
    """One row per cell with what the sanity checks need (:data:`~volrob.evaluation.sanity.CELL_COLUMNS`)."""
    rows = []
    for c in cells:
        atk = c.create_attack(cfg.seed)
        rows.append({"cell": c.id, "model": c.source, "defended": cfg.model(c.source).defended, "attack": c.attack,
                     "kind": _kind(atk), "targeted": bool(atk.targeted), "budget_key": c.budget_key,
                     "budget": _number(c.budget), "eps": _number(c.eps()),
                     "steps": _number(atk.params().get("steps")), "options": json.dumps(c.options, sort_keys=True),
                     "window": json.dumps(c.window, sort_keys=True)})
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def _losses(records: dict[str, dict[str, Any]], cells: list[Cell]) -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = {c.id: [] for c in cells}
    for key, record in records.items():
        cell = key.split("/", 1)[0]
        out.setdefault(cell, []).append(list(record.get("loss", [])) + list(record.get("final_loss", [])))
    return out


def write_outputs(result: RunResult, store: RunStore) -> Outputs:
    """Write the derived tables and figures of ``result`` into ``store`` (see the module docstring)."""
    cfg, tables, cells = result.cfg, result.tables, result.cells
    assert tables is not None
    if tables.failures.empty:
        (store.root / "failures.csv").unlink(missing_ok=True)
    else:
        store.write_table("failures.csv", tables.failures)
    if not cells:
        summary = summarize(tables.results, by=("model", "region", "metric"), value="clean", seed=cfg.seed) \
            if not tables.results.empty else pd.DataFrame()
        store.write_table("summary.csv", summary)
        store.write_table("results.csv", tables.results)
        return Outputs(summary)
    results = tables.results
    out = Outputs(summarise(results))
    store.write_table("summary.csv", out.summary)
    white = results[results["white_box"].astype(bool)]
    out.flags = run_checks(white, cell_table(cfg, [c for c in cells if c.source in set(white["model"])]),
                           _losses(tables.records, cells), cfg.sanity, region=cfg.region) if not white.empty else []
    if not tables.queries.empty:
        from volrob.report.query_plot import query_plot

        store.write_table("queries.csv", tables.queries)
        out.figures.append(query_plot(tables.queries, store.root / "queries.png", region=cfg.region))
    if cfg.bands is not None and not tables.bands.empty:
        out.figures += _bands(cfg, tables.bands, store)
    if cfg.transfer:
        out.matrices = transfer_matrices(results, region=cfg.region, success_drop=cfg.success_drop)
        store.write_table("matrices.csv", out.matrices)
        out.figures += _heatmaps(cfg, out.matrices, store)
        out.flags.append(blackbox_stronger(out.matrices, cfg.sanity.tolerance))
    elif result.pool is not None:
        out.comparison = _comparison(result, results, store)
    store.write_json("sanity.json", [f.to_dict() for f in out.flags])
    store.write_table("results.csv", results)
    return out


def _comparison(result: RunResult, results: pd.DataFrame, store: RunStore) -> pd.DataFrame | None:
    """The defence comparison of a white-box run of two or more models against its reference."""
    cfg, pool = result.cfg, result.pool
    models = [m for m in cfg.models if not m.is_ensemble and m.name in set(results["model"])]
    if len(models) < 2 or pool is None:
        return None
    reference = resolve_reference(models, cfg.reference)
    if reference is None:
        return None
    from volrob.report.compare_plot import plot_comparison

    defences = {m.name: pool.sources[m.name].defence or ("defended" if m.defended else "none") for m in models}
    table = compare_models(results, defences, reference, seed=cfg.seed)
    store.write_table("comparison.csv", table)
    plot_comparison(table, store.root / "comparison.png", region=cfg.region)
    return table


def _heatmaps(cfg: RunConfig, matrices: pd.DataFrame, store: RunStore) -> list[Path]:
    from volrob.report.heatmap import transfer_plot

    sources, targets = cfg.source_names, cfg.target_names
    figures = []
    for (attack, key, budget), g in matrices.groupby(["attack", "budget_key", "budget"], sort=False, dropna=False):
        path = store.root / "heatmaps" / f"{_slug(attack, key, budget)}.png"
        figures.append(transfer_plot(g, path, sources=sources, targets=targets, region=cfg.region,
                                     success_drop=cfg.success_drop))
    return figures


def band_summary(bands: pd.DataFrame, region: str) -> pd.DataFrame:
    """Mean Dice drop of ``region`` per attack, budget, source, scored model and band (tidy)."""
    d = bands[(bands["metric"] == "dice") & (bands["region"] == region)]
    keys = ["attack", "budget_key", "budget", "source", "model", "white_box", "band"]
    return d.groupby(keys, sort=False, dropna=False).agg(
        n=("case", "nunique"), energy_fraction=("energy_fraction", "mean"), dice_drop=("degradation", "mean"),
    ).reset_index()


def _bands(cfg: RunConfig, bands: pd.DataFrame, store: RunStore) -> list[Path]:
    from volrob.report.spectrum_plot import band_bar_plot

    store.write_table("bands.csv", bands)
    summary = band_summary(bands, cfg.region)
    store.write_table("bands_summary.csv", summary)
    figures = []
    for (attack, key, budget, source), g in summary.groupby(["attack", "budget_key", "budget", "source"],
                                                             sort=False, dropna=False):
        table = g.rename(columns={"model": "name", "dice_drop": "value"})[["name", "band", "value", "white_box"]]
        path = store.root / "bands" / f"{_slug(attack, key, budget, source)}.png"
        figures.append(band_bar_plot(table, path, region=cfg.region, attack=str(attack),
                                     budget=budget_text(key, budget), source=str(source), n=g["n"].astype(int)))
    return figures
