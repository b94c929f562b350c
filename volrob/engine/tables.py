"""The one result schema, and the merge of unit files into tidy tables (written last, by rank 0).

Every table names one quantity one way:

- ``results.csv``: one row per (cell, case, scored model, region, metric) — ``clean`` and ``adversarial`` score,
  ``degradation`` (positive = worse) and ``rel_degradation``, the perturbation's ``linf_255`` / ``l2_255`` (1/255
  units of the [0, 1] attack space), ``ssim``, ``psnr``, the attack's ``seconds``, and provenance (``source`` that
  crafted, ``model`` that was scored, ``white_box``, attack ``params`` / ``threat`` / ``seed``, both sha256). An
  evaluation without attacks has one row per (case, model, region, metric) with the ``clean`` score.
- ``queries.csv``: the same columns plus ``queries`` and ``selected_queries`` for attacks that keep snapshots.
- ``bands.csv``: band-filtered perturbations (``band``, ``energy_fraction``) scored on every target.
- ``failures.csv``: units that could not be computed, with the reason.

Rows are ordered by cell (config order), case (manifest order), target (config order), region and metric — never
by which rank or run computed them, so a run sharded over processes merges to the same tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from volrob.engine.cells import Cell, CleanUnit
from volrob.engine.store import RunStore
from volrob.errors import DataError
from volrob.evaluation.degradation import degradation
from volrob.evaluation.summary import paired_wilcoxon

PROVENANCE = ["cell", "case", "split", "model", "source", "white_box", "attack", "budget_key", "budget", "eps",
              "params", "threat", "seed"]
SCORES = ["region", "metric", "clean", "adversarial", "degradation", "rel_degradation"]
PERTURBATION = ["linf_255", "l2_255", "ssim", "psnr", "seconds"]
RESULT_COLUMNS = [*PROVENANCE, *SCORES, *PERTURBATION, "model_sha256", "source_sha256"]
CLEAN_COLUMNS = ["case", "split", "model", "region", "metric", "clean", "seconds", "model_sha256"]
QUERY_COLUMNS = [*RESULT_COLUMNS, "queries", "selected_queries"]
BAND_COLUMNS = ["cell", "case", "model", "source", "white_box", "attack", "budget_key", "budget", "eps", "band",
                "energy_fraction", "region", "metric", "clean", "adversarial", "degradation"]
FAILURE_COLUMNS = ["unit", "kind", "cell", "model", "case", "reason"]
SUMMARY_COLUMNS = ["cell", "source", "model", "attack", "budget_key", "budget", "eps", "region", "metric", "n",
                   "clean_mean", "adversarial_mean", "degradation", "rel_degradation", "wilcoxon_p",
                   "linf_255_max", "ssim_mean"]
TIME_COLUMNS = ("seconds",)
"""Columns that measure the machine, not the model: they differ between otherwise identical runs."""


@dataclass
class Tables:
    """The merged tables of a run (empty frames where a kind of row does not occur)."""

    results: pd.DataFrame
    queries: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=QUERY_COLUMNS))
    bands: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BAND_COLUMNS))
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each finished attack unit's record (loss history, per-sample norms), keyed ``cell/case``."""


def _clean(store: RunStore, model: str, case: str) -> dict[str, Any] | None:
    payload = store.read(store.clean_path(model, case))
    return payload if payload is not None and payload.get("status") == "ok" else None


def _index(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {(r["region"], r["metric"]): float(r["value"]) for r in rows}


def _pair(clean: dict[tuple[str, str], float], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        before = clean[(r["region"], r["metric"])]
        drop, rel = degradation(r["metric"], before, float(r["value"]))
        out.append({"region": r["region"], "metric": r["metric"], "clean": before, "adversarial": float(r["value"]),
                    "degradation": drop, "rel_degradation": rel})
    return out


def _provenance(cell: Cell, eps: float | None, case: str, split: str, target: str, record: dict[str, Any]
                ) -> dict[str, Any]:
    return {"cell": cell.id, "case": case, "split": split, "model": target, "source": cell.source,
            "white_box": cell.source == target, "attack": cell.attack, "budget_key": cell.budget_key,
            "budget": cell.budget, "eps": eps,
            "params": json.dumps(record.get("params", {}), sort_keys=True, default=str),
            "threat": json.dumps(record.get("threat", {}), sort_keys=True, default=str), "seed": record.get("seed")}


def _selected(snapshots: dict[str, list[dict[str, Any]]], clean_rows: list[dict[str, Any]], region: str
              ) -> list[tuple[int, int, list[dict[str, Any]]]]:
    """Per query count (0 = clean): the most damaging input so far, judged by ``region`` Dice (earliest on ties)."""
    candidates = [(0, clean_rows), *sorted((int(q), rows) for q, rows in snapshots.items())]
    out, best = [], None
    for q, rows in candidates:
        value = _index(rows)[(region, "dice")]
        if best is None or value < best[0]:
            best = (value, q, rows)
        out.append((q, best[1], best[2]))
    return out


def merge(store: RunStore, cells: Sequence[Cell], cases: Sequence[str], split: str, clean_units: Sequence[CleanUnit],
          *, region: str, sha: dict[str, str]) -> Tables:
    """Read every unit file of the run and build its tables (see the module docstring)."""
    failures: list[dict[str, Any]] = []
    clean: dict[tuple[str, str], dict[str, Any]] = {}
    for u in clean_units:
        payload = _clean(store, u.model, u.case)
        if payload is None:
            failures.append(_failure(store.read(store.clean_path(u.model, u.case)), u.key, "clean", "", u.model,
                                     u.case))
        else:
            clean[(u.model, u.case)] = payload
    if not cells:
        rows = [{"case": u.case, "split": split, "model": u.model, "region": r["region"], "metric": r["metric"],
                 "clean": float(r["value"]), "seconds": clean[(u.model, u.case)]["seconds"],
                 "model_sha256": sha[u.model]}
                for u in clean_units if (u.model, u.case) in clean for r in clean[(u.model, u.case)]["rows"]]
        return Tables(pd.DataFrame(rows, columns=CLEAN_COLUMNS),
                      failures=pd.DataFrame(failures, columns=FAILURE_COLUMNS))
    results, queries, bands, records = [], [], [], {}
    for cell in cells:
        eps = cell.eps()
        for case in cases:
            payload = store.read(store.unit_path(cell.id, case))
            if payload is None or payload.get("status") != "ok":
                failures.append(_failure(payload, f"{cell.id}/{case}", "attack", cell.id, cell.source, case))
                continue
            record = payload.get("record", {})
            records[f"{cell.id}/{case}"] = record
            pert = {**payload["perturbation"], "seconds": payload["seconds"]}
            for target in cell.targets:
                if (target, case) not in clean:
                    continue  # the target's clean unit failed: reported above
                base = _provenance(cell, eps, case, split, target, record)
                shas = {"model_sha256": sha[target], "source_sha256": sha[cell.source]}
                entry = payload["scores"][target]
                clean_rows = clean[(target, case)]["rows"]
                clean_idx = _index(clean_rows)
                results += [{**base, **s, **pert, **shas} for s in _pair(clean_idx, entry["rows"])]
                if entry.get("snapshots"):
                    linf = {int(q): v for q, v in payload.get("snapshot_linf_255", {}).items()}
                    for q, chosen, rows in _selected(entry["snapshots"], clean_rows, region):
                        extra = {**pert, "linf_255": linf.get(chosen, 0.0), "queries": q, "selected_queries": chosen}
                        queries += [{**base, **s, **extra, **shas} for s in _pair(clean_idx, rows)]
                for band, b in (entry.get("bands") or {}).items():
                    bands += [{**{k: base[k] for k in BAND_COLUMNS if k in base}, "band": band,
                               "energy_fraction": b["energy_fraction"], **{k: s[k] for k in SCORES[:5]}}
                              for s in _pair(clean_idx, b["rows"])]
    return Tables(pd.DataFrame(results, columns=RESULT_COLUMNS), pd.DataFrame(queries, columns=QUERY_COLUMNS),
                  pd.DataFrame(bands, columns=BAND_COLUMNS), pd.DataFrame(failures, columns=FAILURE_COLUMNS), records)


def _failure(payload: dict[str, Any] | None, unit: str, kind: str, cell: str, model: str, case: str
             ) -> dict[str, Any]:
    reason = (payload or {}).get("reason") or "not computed (interrupted, or its case failed)"
    return {"unit": unit, "kind": kind, "cell": cell, "model": model, "case": case, "reason": reason}


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Per cell, scored model, region and metric: means, degradation of the means, paired Wilcoxon p (clean vs
    adversarial), largest L∞ and mean SSIM."""
    out = []
    keys = ["cell", "source", "model", "attack", "budget_key", "budget", "eps", "region", "metric"]
    for k, g in results.groupby(keys, sort=False, dropna=False):
        clean, adv = g["clean"].to_numpy(float), g["adversarial"].to_numpy(float)
        drop, rel = degradation(str(k[keys.index("metric")]), float(clean.mean()), float(adv.mean()))
        p = paired_wilcoxon(clean, adv).pvalue if len(g) > 1 and not np.allclose(clean, adv) else 1.0
        out.append({**dict(zip(keys, k, strict=True)), "n": len(g), "clean_mean": float(clean.mean()),
                    "adversarial_mean": float(adv.mean()), "degradation": drop, "rel_degradation": rel,
                    "wilcoxon_p": float(p), "linf_255_max": float(g["linf_255"].max()),
                    "ssim_mean": float(g["ssim"].mean())})
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def check_complete(tables: Tables) -> None:
    """DataError when nothing could be scored at all (every unit failed)."""
    if tables.results.empty and not tables.failures.empty:
        first = tables.failures.iloc[0]
        raise DataError(f"no unit could be computed; first failure {first['unit']}: {first['reason']}")
