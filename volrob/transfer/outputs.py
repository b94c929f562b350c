"""What a transfer run writes next to ``transfer.csv``: ``matrices.csv``, one heatmap PNG per attack and budget,
``sanity.json`` (black-box stronger than white-box), and with band analysis ``bands_summary.csv`` plus a bar plot
per attack and budget."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from volrob.io import atomic_write_text
from volrob.report.heatmap import transfer_heatmap
from volrob.report.spectrum_plot import band_bar_plot
from volrob.transfer.config import TransferConfig
from volrob.transfer.engine import TransferResult
from volrob.transfer.matrix import blackbox_stronger, pivot, transfer_matrices


@dataclass
class TransferOutputs:
    """The matrices, the sanity hits, and the figure paths written."""

    matrices: pd.DataFrame
    flags: list[dict[str, Any]]
    figures: list[Path]


def _slug(*parts: Any) -> str:
    """A file name from ``parts`` (missing parts skipped, floats as ``8`` not ``8.0``)."""
    text = "_".join(f"{p:g}" if isinstance(p, float) else str(p) for p in parts if p is not None and p == p)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _budget_text(key: Any, value: Any) -> str:
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" if key else "default budget"


def band_summary(bands: pd.DataFrame, region: str) -> pd.DataFrame:
    """Mean Dice drop of ``region`` per attack, budget, source, target and band (tidy)."""
    d = bands[(bands["metric"] == "dice") & (bands["region"] == region)]
    keys = ["attack", "budget_key", "budget", "source", "target", "white_box", "band"]
    return d.groupby(keys, sort=False, dropna=False).agg(
        n=("case", "nunique"), energy_fraction=("energy_fraction", "mean"), dice_drop=("degradation", "mean"),
    ).reset_index()


def write_outputs(cfg: TransferConfig, result: TransferResult) -> TransferOutputs:
    """Matrices, heatmaps, sanity flags and band summaries from ``result`` into its folder."""
    out = result.out_dir
    matrices = transfer_matrices(result.rows, region=cfg.region, success_drop=cfg.success_drop)
    atomic_write_text(out / "matrices.csv", matrices.to_csv(index=False))
    sources, targets = cfg.source_names, cfg.target_names
    figures = []
    for (attack, key, budget), g in matrices.groupby(["attack", "budget_key", "budget"], sort=False, dropna=False):
        panels = [(pivot(g, "dice_drop", sources, targets), f"mean {cfg.region} Dice drop", "Dice drop"),
                  (pivot(g, "success_rate", sources, targets),
                   f"attack success rate (drop ≥ {cfg.success_drop:.0%})", "success rate")]
        path = out / "heatmaps" / f"{_slug(attack, key, budget)}.png"
        figures.append(transfer_heatmap(panels, path, title=f"{attack}, {_budget_text(key, budget)}: transfer"))
    flags = blackbox_stronger(matrices, cfg.tolerance)
    sanity = [{"name": "blackbox_stronger_than_whitebox", "raised": bool(flags), "hits": flags,
               "message": "; ".join(h["text"] for h in flags) or "ok"}]
    atomic_write_text(out / "sanity.json", json.dumps(sanity, indent=2, default=str) + "\n")
    if cfg.bands and not result.bands.empty:
        summary = band_summary(result.bands, cfg.region)
        atomic_write_text(out / "bands_summary.csv", summary.to_csv(index=False))
        for (attack, key, budget, source), g in summary.groupby(["attack", "budget_key", "budget", "source"],
                                                                 sort=False, dropna=False):
            table = g.rename(columns={"target": "name", "dice_drop": "value"})[["name", "band", "value"]]
            path = out / "bands" / f"{_slug(attack, key, budget, source)}.png"
            figures.append(band_bar_plot(table, path, ylabel=f"{cfg.region} Dice drop"))
    return TransferOutputs(matrices, flags, figures)


def format_matrix(matrices: pd.DataFrame, sources: list[str], targets: list[str], value: str = "dice_drop") -> str:
    """Text matrices (one per attack and budget) of ``value`` for the terminal."""
    blocks = []
    for (attack, key, budget), g in matrices.groupby(["attack", "budget_key", "budget"], sort=False, dropna=False):
        frame = pivot(g, value, sources, targets)
        blocks.append(f"{attack} {_budget_text(key, budget)} — {value} (rows: source, columns: target)\n"
                      + frame.to_string(float_format=lambda v: f"{v:.3f}"))
    return "\n\n".join(blocks)
