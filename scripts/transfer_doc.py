"""Render a finished ``volrob transfer`` run as Markdown with its heatmaps, band analysis and perturbation spectra.

    python scripts/transfer_doc.py --run runs/demo/transfer --doc docs/transfer_demo.md --figures docs/transfer

Reads ``transfer.json``, ``matrices.csv``, ``sanity.json`` and (when present) ``bands_summary.csv`` and the crafted
perturbations of the run; copies the heatmaps into ``--figures``; draws the radially averaged DCT spectrum of every
attack cell's perturbations (all sources and cases); writes the document atomically. Prints one JSON object with
the paths written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from volrob.analysis.spectrum import spectrum_table
from volrob.io import atomic_write_text
from volrob.report.spectrum_plot import spectrum_plot


def _label(attack: str, key: Any, budget: Any) -> str:
    value = f"{budget:g}" if isinstance(budget, float) else str(budget)
    return f"{attack} {key}={value}" if key and key == key else attack


def _matrix_md(frame: pd.DataFrame, fmt: str) -> list[str]:
    cols = list(frame.columns)
    lines = ["| source \\ target | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for src, row in frame.iterrows():
        cells = ["–" if not np.isfinite(v) else format(v, fmt) for v in row.to_numpy(dtype=float)]
        lines.append(f"| {src} | " + " | ".join(f"**{c}**" if src == t else c for c, t in zip(cells, cols,
                                                                                          strict=True)) + " |")
    return lines


def spectra(run: Path, cells: list[dict[str, Any]]) -> pd.DataFrame:
    """Spectrum table of every attack cell group's stored perturbations (named by attack and budget)."""
    deltas: dict[str, list[torch.Tensor]] = {}
    for c in cells:
        name = _label(c["attack"], c["budget_key"], c["budget"])
        for path in sorted((run / "crafted" / c["source"] / c["id"]).glob("*.npz")):
            with np.load(path) as data:
                deltas.setdefault(name, []).append(torch.from_numpy(np.array(data["delta"], dtype=np.float64)))
    frames = []
    for name, items in deltas.items():
        table = pd.concat([spectrum_table({name: d[None]}) for d in items], ignore_index=True)
        frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="output folder of volrob transfer")
    ap.add_argument("--doc", required=True, help="Markdown file to write")
    ap.add_argument("--figures", required=True, help="folder for the figures (relative links from --doc)")
    ap.add_argument("--command", default="bash scripts/transfer_demo.sh", help="command shown in the document")
    args = ap.parse_args(argv)
    run, doc, figs = Path(args.run), Path(args.doc), Path(args.figures)
    try:
        meta = json.loads((run / "transfer.json").read_text(encoding="utf-8"))
        matrices = pd.read_csv(run / "matrices.csv")
        sanity = json.loads((run / "sanity.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        print(f"error: {run}: not a finished transfer run ({err})", file=sys.stderr)
        return 2
    cfg = meta["config"]
    sources = cfg["sources"] or [m["name"] for m in cfg["models"]]
    targets = cfg["targets"] or [m["name"] for m in cfg["models"] if m.get("members") is None]
    figs.mkdir(parents=True, exist_ok=True)
    link = figs.relative_to(doc.parent) if figs.is_relative_to(doc.parent) else figs
    lines = [
        "# Transfer attacks between architectures (synthetic demo)", "",
        "Command (from the repository root, after README command 1):", "", "```", args.command, "```", "",
        f"Sources: {', '.join(sources)}; targets: {', '.join(targets)}. Split `{cfg['split']}` "
        f"({len(meta['cases'])} case{'s' if len(meta['cases']) != 1 else ''}), seed {cfg['seed']}, region "
        f"{cfg['region']}. Every "
        "perturbation is crafted once on its source (white-box, exact full-volume gradient) and scored on every "
        "target with the target's own overlapping sliding window; the diagonal (bold) is the white-box reference. "
        f"A case counts as an attack success when its {cfg['region']} Dice falls by at least "
        f"{cfg['success_drop']:.0%} of its clean value. Transfer ratio = black-box drop / the target's white-box "
        "drop. Checkpoints: " + ", ".join(f"`{k}` {str(v)[:12]}" for k, v in meta["checkpoints"].items()) + ".", "",
    ]
    clean = matrices.groupby("target")["clean_dice"].first()
    lines += ["Clean mean " + cfg["region"] + " Dice: " + ", ".join(f"{t} {clean[t]:.3f}" for t in targets
                                                                   if t in clean) + ".", ""]
    for (attack, key, budget), g in matrices.groupby(["attack", "budget_key", "budget"], sort=False, dropna=False):
        name = _label(attack, key, budget)
        lines += [f"## {name}", ""]
        for value, title, fmt in (("dice_drop", "mean Dice drop", ".3f"), ("success_rate", "attack success rate",
                                                                          ".0%"),
                                  ("transfer_ratio", "transfer ratio", ".2f")):
            frame = g.pivot(index="source", columns="target", values=value).reindex(index=sources, columns=targets)
            lines += [f"{title}:", "", *_matrix_md(frame, fmt), ""]
        stem = "_".join(str(p) if not isinstance(p, float) else f"{p:g}" for p in (attack, key, budget)
                        if p == p and p is not None)
        src_png = run / "heatmaps" / f"{stem}.png"
        if src_png.is_file():
            shutil.copyfile(src_png, figs / src_png.name)
            lines += [f"![{name} heatmaps]({(link / src_png.name).as_posix()})", ""]
    flag = sanity[0]
    lines += ["## Sanity", "", f"- black-box stronger than white-box: {'**RAISED**' if flag['raised'] else 'clear'}"
              f" ({flag['message']})", ""]
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
            wb, tr = g[g["white_box"]], g[~g["white_box"]]
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
