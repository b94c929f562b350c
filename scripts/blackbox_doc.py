"""Render finished ``volrob query`` and ``volrob universal`` runs as Markdown (docs/blackbox_demo.md).

    python scripts/blackbox_doc.py --query runs/demo/query --universal runs/demo/universal \
        --doc docs/blackbox_demo.md --figures docs/blackbox

Query attack: mean WT Dice over the cases after each scored query count (queries 0 = clean), with the figure of
``volrob query`` copied into ``--figures``. Universal perturbation: per target, mean clean WT Dice, with the tiled
universal δ, and with the random-sign control of the same budget, plus a paired one-sided Wilcoxon test (universal
lower than control on the same cases). Prints one JSON object with the paths written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from volrob.errors import DataError, VolrobError
from volrob.evaluation.summary import paired_wilcoxon
from volrob.io import atomic_write_text


def query_table(rows: pd.DataFrame, region: str = "WT") -> pd.DataFrame:
    """Mean and range of ``region`` Dice over cases per query count (queries 0 is the clean input)."""
    sel = rows[(rows.region == region) & (rows.metric == "dice")]
    return (sel.groupby("queries")["value"].agg(["count", "mean", "min", "max"]).reset_index()
            .rename(columns={"count": "cases"}))


def universal_table(rows: pd.DataFrame, region: str = "WT") -> pd.DataFrame:
    """Per target: cases, mean clean / universal / control Dice and the one-sided paired Wilcoxon p (universal
    below control)."""
    sel = rows[(rows.region == region) & (rows.metric == "dice")]
    out = []
    for target, g in sel.groupby("target", sort=False):
        uni = g[g.perturbation == "universal"].set_index("case")["adversarial"].sort_index()
        noise = g[g.perturbation == "noise"].set_index("case")["adversarial"].sort_index()
        clean = g[g.perturbation == "universal"].set_index("case")["clean"].sort_index()
        p = paired_wilcoxon(noise, uni, alternative="greater").pvalue  # Series by case: paired by id
        out.append({"target": target, "cases": len(uni), "clean": clean.mean(), "universal": uni.mean(),
                    "control": noise.mean(), "p_universal_lower": p})
    return pd.DataFrame(out)


def render(query_dir: Path, universal_dir: Path, figures: Path, doc: Path) -> dict[str, Any]:
    """Write the document; returns the paths written."""
    qrows = pd.read_csv(query_dir / "queries.csv")
    qrun = json.loads((query_dir / "run.json").read_text(encoding="utf-8"))
    qopts = qrun.get("attack_options", {})
    urows = pd.read_csv(universal_dir / "universal.csv")
    urun = json.loads((universal_dir / "universal.json").read_text(encoding="utf-8"))
    figures.mkdir(parents=True, exist_ok=True)
    fig = figures / "queries.png"
    shutil.copyfile(query_dir / "queries.png", fig)
    rel = Path(os.path.relpath(fig, doc.parent))
    qt, ut = query_table(qrows), universal_table(urows)
    lines = ["# Query-based and universal black-box attacks on the synthetic demo models", "",
             "Produced by `bash scripts/blackbox_demo.sh` (after README command 1 and `bash scripts/transfer_demo.sh`, "
             "which trains the UNETR and Mamba-style models).", "",
             "## Square attack (queries only)", "",
             f"Model `{qrows['model'].iloc[0]}`, split `{qrun.get('split')}`, L∞ ε = {qopts.get('eps')}/255, "
             f"query budget {qopts.get('queries')} per case, seed {qrun.get('seed')}. The attack reads only the "
             "model's predictions; each candidate costs one query.", "",
             "| queries | cases | mean WT Dice | min | max |", "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {int(r.queries)} | {int(r.cases)} | {r.mean:.3f} | {r.min:.3f} | {r.max:.3f} |"
              for r in qt.itertuples()]
    lines += ["", f"![WT Dice vs queries]({rel.as_posix()})", "",
              "## Universal perturbation", "",
              f"Learned on `{urun.get('train_split')}` crops of the source `{urows['source'].iloc[0]}` "
              f"(ε = {urun.get('eps')}/255, {urun.get('epochs')} epochs, {urun.get('crops_per_case')} crops per case, "
              f"step {urun.get('step')}/255, seed {urun.get('seed')}), tiled over the unseen "
              f"`{urun.get('eval_split')}` cases and scored on every model. Control: {urun.get('noise_control')}.", "",
              "| target | cases | clean WT | universal δ | random-sign control | p (universal < control) |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.target} | {r.cases} | {r.clean:.3f} | {r.universal:.3f} | {r.control:.3f} | "
              f"{r.p_universal_lower:.3g} |" for r in ut.itertuples()]
    lines.append("")
    atomic_write_text(doc, "\n".join(lines))
    return {"doc": str(doc), "figures": [str(fig)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--query", required=True, type=Path, help="output folder of volrob query")
    ap.add_argument("--universal", required=True, type=Path, help="output folder of volrob universal")
    ap.add_argument("--doc", required=True, type=Path)
    ap.add_argument("--figures", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        for folder, name in ((args.query, "queries.csv"), (args.universal, "universal.csv")):
            if not (folder / name).is_file():
                raise DataError(f"no {name} here (run the command first)", path=folder)
        print(json.dumps(render(args.query, args.universal, args.figures, args.doc)))
    except VolrobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
