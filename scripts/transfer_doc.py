"""Render a finished ``volrob transfer`` run as Markdown with its heatmaps, band analysis and perturbation spectra.

    python scripts/transfer_doc.py --run runs/demo/transfer --doc docs/transfer_demo.md --figures docs/transfer

Reads the run's ``run.json`` (command ``transfer``: its config, cases and cells), ``matrices.csv`` (one row per
attack, budget, source and scored ``model``), ``results.csv`` (the checkpoints' sha256), ``sanity.json`` and (when
present) ``bands_summary.csv`` and the stored perturbations ``units/<cell>/<case>.npz``; copies the heatmaps into
``--figures``; draws the radially averaged DCT spectrum of every attack cell's perturbations (all sources and
cases); writes the document atomically. Prints one JSON object with the paths written.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from volrob.analysis.spectrum import spectrum_table
from volrob.errors import DataError, VolrobError
from volrob.io import atomic_write_text, shown_path
from volrob.report.spectrum_plot import spectrum_plot


def _label(attack: str, key: Any, budget: Any) -> str:
    value = f"{budget:g}" if isinstance(budget, float) else str(budget)
    return f"{attack} {key}={value}" if isinstance(key, str) and key else attack


def heatmap_stem(attack: str, key: Any, budget: Any) -> str:
    """The file stem of a run's heatmap of one attack and budget (as the engine names it in ``heatmaps/``)."""
    parts = [p for p in (attack, key, budget) if p is not None and p == p]
    text = "_".join(f"{p:g}" if isinstance(p, float) else str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _matrix_md(frame: pd.DataFrame, fmt: str) -> list[str]:
    cols = list(frame.columns)
    lines = ["| source \\ target | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for src, row in frame.iterrows():
        cells = ["–" if not np.isfinite(v) else format(v, fmt) for v in row.to_numpy(dtype=float)]
        lines.append(f"| {src} | " + " | ".join(f"**{c}**" if src == t else c for c, t in zip(cells, cols,
                                                                                          strict=True)) + " |")
    return lines


def spectra(run: Path, cells: list[dict[str, Any]]) -> pd.DataFrame:
    """Spectrum table of every attack cell group's stored perturbations (``units/<cell>/<case>.npz``, named by
    attack and budget; cells of several sources with the same attack and budget are pooled)."""
    deltas: dict[str, list[torch.Tensor]] = {}
    for c in cells:
        name = _label(c["attack"], c["budget_key"], c["budget"])
        for path in sorted((run / "units" / c["cell"]).glob("*.npz")):
            with np.load(path) as data:
                delta = torch.from_numpy(np.array(data["delta"], dtype=np.float64))
            deltas.setdefault(name, []).append(delta.reshape(1, *delta.shape[-4:]))  # (1, C, D, H, W)
    frames = [pd.concat([spectrum_table({name: d}) for d in items], ignore_index=True)
              for name, items in deltas.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_run(run: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """``run.json``, ``matrices.csv``, ``results.csv`` and ``sanity.json`` of a finished transfer run; DataError
    naming the folder otherwise."""
    try:
        meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
        matrices = pd.read_csv(run / "matrices.csv")
        results = pd.read_csv(run / "results.csv", usecols=["model", "model_sha256"])
        sanity = json.loads((run / "sanity.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"not a finished transfer run ({err})", path=run) from None
    if meta.get("command") != "transfer" or meta.get("status") != "finished":
        raise DataError(f"not a finished transfer run (run.json: command {meta.get('command')!r}, status "
                        f"{meta.get('status')!r})", path=run)
    return meta, matrices, results, sanity


def sanity_lines(flags: list[dict[str, Any]]) -> list[str]:
    """The black-box check, then every white-box check that was raised (the diagonal's grid checks)."""
    names = {"blackbox_stronger_than_whitebox": "black-box stronger than white-box"}
    shown = [f for f in flags if f["name"] in names or f["raised"]]
    return [f"- {names.get(f['name'], f['name'])}: {'**RAISED**' if f['raised'] else 'clear'} ({f['message']})"
            for f in shown]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="output folder of volrob transfer")
    ap.add_argument("--doc", required=True, help="Markdown file to write")
    ap.add_argument("--figures", required=True, help="folder for the figures (relative links from --doc)")
    ap.add_argument("--command", default="bash scripts/transfer_demo.sh", help="command shown in the document")
    args = ap.parse_args(argv)
    run, doc, figs = Path(args.run), Path(args.doc), Path(args.figures)
    try:
        meta, matrices, results, sanity = read_run(run)
    except VolrobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = meta["config"]
    sources = cfg["sources"] or [m["name"] for m in cfg["models"]]
    targets = cfg["targets"] or [m["name"] for m in cfg["models"] if m.get("members") is None]
    shas = results.groupby("model", sort=False)["model_sha256"].first()
    cases = meta["cases"]
    figs.mkdir(parents=True, exist_ok=True)
    link = figs.relative_to(doc.parent) if figs.is_relative_to(doc.parent) else figs
    lines = [
        "# Transfer attacks between architectures (synthetic demo)", "",
        "Command (from the repository root, after README command 1):", "", "```", args.command, "```", "",
        f"`{shown_path(run)}` is a `volrob transfer` run folder (`docs/engine.md`): `results.csv` has one row per "
        "case, "
        "scored `model`, crafting `source`, attack, budget, region and metric; `matrices.csv` the matrices below (one "
        "row per attack, budget, source and scored `model`); `bands_summary.csv` the band table; each crafted "
        "perturbation is kept in `units/<cell>/<case>.npz` (the spectra are drawn from them).", "",
        f"Sources: {', '.join(sources)}; targets: {', '.join(targets)}. Split `{cfg['split']}` "
        f"({len(cases)} case{'s' if len(cases) != 1 else ''}), seed {cfg['seed']}, region "
        f"{cfg['region']}. Every "
        "perturbation is crafted once on its source (white-box, exact full-volume gradient) and scored on every "
        "target with the target's own overlapping sliding window; the diagonal (bold) is the white-box reference. "
        f"A case counts as an attack success when its {cfg['region']} Dice falls by at least "
        f"{cfg['success_drop']:.0%} of its clean value. Transfer ratio = black-box drop / the target's white-box "
        "drop. Checkpoints: " + ", ".join(f"`{k}` {str(v)[:12]}" for k, v in shas.items()) + ".", "",
    ]
    clean = matrices.groupby("model")["clean_dice"].first()
    lines += ["Clean mean " + cfg["region"] + " Dice: " + ", ".join(f"{t} {clean[t]:.3f}" for t in targets
                                                                   if t in clean) + ".", ""]
    for (attack, key, budget), g in matrices.groupby(["attack", "budget_key", "budget"], sort=False, dropna=False):
        name = _label(attack, key, budget)
        lines += [f"## {name}", ""]
        for value, title, fmt in (("dice_drop", "mean Dice drop", ".3f"), ("success_rate", "attack success rate",
                                                                          ".0%"),
                                  ("transfer_ratio", "transfer ratio", ".2f")):
            frame = g.pivot(index="source", columns="model", values=value).reindex(index=sources, columns=targets)
            lines += [f"{title}:", "", *_matrix_md(frame, fmt), ""]
        src_png = run / "heatmaps" / f"{heatmap_stem(attack, key, budget)}.png"
        if src_png.is_file():
            shutil.copyfile(src_png, figs / src_png.name)
            lines += [f"![{name} heatmaps]({(link / src_png.name).as_posix()})", ""]
    lines += ["## Sanity", "", *sanity_lines(sanity), ""]
    if (run / "bands_summary.csv").is_file():
        bands = pd.read_csv(run / "bands_summary.csv")
        lines += ["## Which DCT bands carry the attack", "",
                  "Each perturbation is split into complementary DCT bands (normalised frequency radius); each band "
                  "alone is added to the clean input and scored. Mean Dice drop per band (white-box: source = "
                  "target; transferred: the mean over the other targets), and the share of the perturbation's "
                  "energy in the band:", "",
                  "| attack | band | energy share | white-box drop | transferred drop |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for (attack, key, budget, band), g in bands.groupby(["attack", "budget_key", "budget", "band"],
                                                           sort=False, dropna=False):
            white = g["white_box"].astype(bool)
            wb, tr = g[white], g[~white]
            lines.append(f"| {_label(attack, key, budget)} | {band} | {g['energy_fraction'].mean():.3f} | "
                         f"{wb['dice_drop'].mean():.3f} | {tr['dice_drop'].mean() if len(tr) else float('nan'):.3f} |")
        lines.append("")
    table = spectra(run, meta["cells"])
    if not table.empty:
        path = spectrum_plot(table, figs / "spectrum.png", title="DCT energy spectrum of the perturbations")
        lines += ["## Spectra of the perturbations", "",
                  f"![spectra]({(link / path.name).as_posix()})", "",
                  "Radially averaged energy of the perturbations' full-volume 3D DCT (all sources and cases).", ""]
    atomic_write_text(doc, "\n".join(lines))
    print(json.dumps({"doc": str(doc), "figures": sorted(str(p) for p in figs.iterdir())}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
