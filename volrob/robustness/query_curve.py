"""Dice vs queries: score the query-based attack ``square3d`` at several query budgets from one run per case.

Per case: preprocess to the [0, 1] attack space, run ``square3d`` once with checkpoints (the budget ``queries``
always among them), then segment the clean input and the best adversarial input at every checkpoint, map each back
to the source grid and score it against the source labels. Scoring happens after the attack, through a separate
no-gradient forward per scored input, so it never counts against the attack's query budget. One tidy row per
case × query count (0 = clean) × region × metric.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from volrob import attacks
from volrob.data.cases import load_case
from volrob.data.labels import canonical_to_regions
from volrob.data.preprocess import Preprocessed, preprocess
from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import EmptyPolicy, get_policy
from volrob.inference.predictor import Predictor
from volrob.io import atomic_write_text
from volrob.robustness.attack_run import case_seed, open_run
from volrob.robustness.model_source import ModelSource
from volrob.robustness.scoring import score_on_source
from volrob.utils.runtime import environment

ATTACK = "square3d"
QUERY_COLUMNS = ["case", "model", "checkpoint_sha256", "params", "seed", "queries", "region", "metric", "value",
                 "linf_255"]


@dataclass
class QueryCurveResult:
    """Tidy rows (see :data:`QUERY_COLUMNS`) and the folder they were written to."""

    rows: pd.DataFrame
    out_dir: Path


def query_checkpoints(checkpoints: Sequence[int], queries: int) -> tuple[int, ...]:
    """``checkpoints`` with the budget ``queries`` appended when it is not already the last one (validation of
    the values is left to the attack)."""
    if not isinstance(checkpoints, (list, tuple)):
        raise ConfigError(f"query_curve: checkpoints must be a list of query counts, got {type(checkpoints).__name__}")
    cps = tuple(checkpoints)
    return cps if cps and cps[-1] == queries else (*cps, queries)


def score_input(predictor: Predictor, inp: torch.Tensor, p: Preprocessed, gt: np.ndarray, spacing: Sequence[float],
                device: torch.device, *, nsd_tolerance_mm: float, policy: EmptyPolicy) -> list[dict[str, Any]]:
    """Region metrics of one preprocessed input ``(1, C, *spatial)`` on the source grid, against ``gt``."""
    return score_on_source(predictor, inp, p, gt, spacing, device, nsd_tolerance_mm=nsd_tolerance_mm,
                           empty_policy=policy)


def query_curve(
    model: str | Path | ModelSource, manifest: str | Path, out_dir: str | Path, *, split: str = "test",
    eps: float = 8.0, queries: int = 1000, checkpoints: Sequence[int] = (10, 30, 100, 300, 1000),
    p_init: float = 0.05, seed: int = 0, device: str = "auto", window: dict[str, Any] | None = None,
    empty_policy: str = "brats", nsd_tolerance_mm: float = 1.0, force: bool = False, progress: bool = True,
) -> QueryCurveResult:
    """Run ``square3d`` (L∞ budget ``eps`` in 1/255 units) on every case of ``split`` and score the clean input and
    the best adversarial input after each of ``checkpoints`` (plus ``queries``) queries; writes ``queries.csv``
    and ``run.json`` to ``out_dir``. ``model`` is a checkpoint path or a :class:`ModelSource`."""
    out = Path(out_dir)
    if (out / "queries.csv").exists() and not force:
        raise ConfigError("already holds queries.csv; use --force to replace it or choose another output folder",
                          path=out)
    cps = query_checkpoints(checkpoints, queries)
    opts: dict[str, Any] = {"eps": eps, "queries": queries, "checkpoints": list(cps), "p_init": p_init}
    attacks.create(ATTACK, **opts, seed=seed)  # validate the configuration before any work
    policy = get_policy(empty_policy)
    src, man, cases, dev, predictor = open_run(model, manifest, split, device, window)

    rows: list[dict[str, Any]] = []
    records: dict[str, Any] = {}
    for case in tqdm(cases, desc="square3d queries", disable=not progress, leave=False, dynamic_ncols=True):
        data = load_case(man, case)
        p = preprocess(data.image, data.label, data.affine, src.preprocessing)
        x = p.image.as_tensor()[None].to(dev)
        lab = p.label.as_tensor()[None]  # type: ignore[union-attr]
        target = canonical_to_regions(lab).float() if predictor.output_mode == "regions" else lab.long()
        atk = attacks.create(ATTACK, **opts, seed=case_seed(seed, case.id))
        res = atk(predictor, x, target.to(dev))
        gt = canonical_to_regions(data.label)
        desc = atk.describe()
        params = json.dumps({"attack": ATTACK, **desc["params"], "threat": desc["threat"]}, sort_keys=True)
        for q, inp in ((0, x), *sorted(res.snapshots.items())):
            linf = float((inp - x).abs().max()) * 255
            for row in score_input(predictor, inp, p, gt, data.spacing, dev, nsd_tolerance_mm=nsd_tolerance_mm,
                                   policy=policy):
                rows.append({"case": case.id, "model": src.name, "checkpoint_sha256": src.sha256,
                             "params": params, "seed": desc["seed"], "queries": q, "region": row["region"],
                             "metric": row["metric"], "value": row["value"], "linf_255": linf})
        records[case.id] = res.record
    df = pd.DataFrame.from_records(rows, columns=QUERY_COLUMNS)
    run = {
        "model": src.name, "checkpoint_sha256": src.sha256, "origin": src.origin, "manifest": str(manifest),
        "manifest_sha256": man.digest(), "split": split, "seed": seed, "attack": ATTACK, "attack_options": opts,
        "window": predictor.window.to_dict(), "preprocessing": src.preprocessing.to_dict(),
        "empty_policy": policy.name, "nsd_tolerance_mm": nsd_tolerance_mm, "device": str(dev),
        "environment": environment(), "records": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "run.json", json.dumps(run, indent=2, default=str) + "\n")
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    atomic_write_text(out / "queries.csv", buf.getvalue())  # written last: it marks completion
    return QueryCurveResult(df, out)


def mean_by_queries(rows: pd.DataFrame, *, region: str = "WT", metric: str = "dice") -> pd.Series:
    """Mean of ``metric`` for ``region`` over cases (and models) per query count, in query order."""
    sel = rows[(rows["region"] == region) & (rows["metric"] == metric)]
    return sel.groupby("queries", sort=True)["value"].mean()
