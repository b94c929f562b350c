"""Render finished ``volrob query`` and ``volrob universal`` runs as Markdown (docs/blackbox_demo.md).

    python scripts/blackbox_doc.py --query runs/demo/query --universal runs/demo/universal \
        --doc docs/blackbox_demo.md --figures docs/blackbox

Query attack (the run's ``queries.csv``): mean WT Dice over the cases of the most damaging input found so far
(column ``adversarial``) after each scored query count (queries 0 = clean), with the figure of ``volrob query``
(``queries.png``) copied into ``--figures``. Universal perturbation (the run's ``results.csv``, attacks
``universal`` and ``sign_noise``, and ``universal/record.json``): per scored model, mean clean WT Dice, with the
tiled universal δ, and with the random-sign control of the same budget, plus a paired one-sided Wilcoxon test
(universal lower than control on the same cases). Prints one JSON object with the paths written.
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
from volrob.io import atomic_write_text, shown_path

CONTROL = "sign_noise"
"""The attack of the universal run's control cell: uniform random signs of the same L∞ budget, seeded per case."""


def query_table(rows: pd.DataFrame, region: str = "WT") -> pd.DataFrame:
    """Mean and range of ``region`` Dice over cases per query count (queries 0 is the clean input); the score of a
    row is its ``adversarial`` column (the most damaging input found up to that count)."""
    sel = rows[(rows["region"] == region) & (rows["metric"] == "dice")]
    return (sel.groupby("queries")["adversarial"].agg(["count", "mean", "min", "max"]).reset_index()
            .rename(columns={"count": "cases"}))


def universal_table(rows: pd.DataFrame, region: str = "WT") -> pd.DataFrame:
    """Per scored model: cases, mean clean / universal / control Dice and the one-sided paired Wilcoxon p (universal
    below control), cases paired by id."""
    sel = rows[(rows["region"] == region) & (rows["metric"] == "dice")]
    out = []
    for model, g in sel.groupby("model", sort=False):
        uni = g[g["attack"] == "universal"].set_index("case")["adversarial"].sort_index()
        noise = g[g["attack"] == CONTROL].set_index("case")["adversarial"].sort_index()
        clean = g[g["attack"] == "universal"].set_index("case")["clean"].sort_index()
        p = paired_wilcoxon(noise, uni, alternative="greater").pvalue  # Series by case: paired by id
        out.append({"model": model, "cases": len(uni), "clean": clean.mean(), "universal": uni.mean(),
                    "control": noise.mean(), "p_universal_lower": p})
    return pd.DataFrame(out)


def _run_json(folder: Path, command: str) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError("no readable run.json (run the command first)", path=folder) from None
    if meta.get("command") != command or meta.get("status") != "finished":
        raise DataError(f"not a finished volrob {command} run (run.json: command {meta.get('command')!r}, status "
                        f"{meta.get('status')!r})", path=folder)
    return meta


def _read(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise DataError(f"no {name} here (run the command first)", path=folder)
    return pd.read_csv(path) if name.endswith(".csv") else json.loads(path.read_text(encoding="utf-8"))


def render(query_dir: Path, universal_dir: Path, figures: Path, doc: Path) -> dict[str, Any]:
    """Write the document; returns the paths written."""
    qrun = _run_json(query_dir, "query")
    qrows = _read(query_dir, "queries.csv")
    qopts = next((c["options"] for c in qrun.get("cells", []) if c.get("attack") == "square3d"), {})
    urun = _run_json(universal_dir, "universal")
    urows = _read(universal_dir, "results.csv")
    learned = _read(universal_dir, "universal/record.json")["params"]
    if not {"universal", CONTROL} <= set(urows["attack"]):
        raise DataError(f"results.csv holds no universal and {CONTROL} rows", path=universal_dir)
    if not (query_dir / "queries.png").is_file():
        raise DataError("no queries.png here (run the command first)", path=query_dir)
    figures.mkdir(parents=True, exist_ok=True)
    fig = figures / "queries.png"
    shutil.copyfile(query_dir / "queries.png", fig)
    rel = Path(os.path.relpath(fig, doc.parent))
    qt, ut = query_table(qrows), universal_table(urows)
    lines = ["# Query-based and universal black-box attacks on the synthetic demo models", "",
             "Produced by `bash scripts/blackbox_demo.sh` (after README command 1 and `bash scripts/transfer_demo.sh`, "
             "which trains the UNETR and Mamba-style models).", "",
             f"The query table is read from `{shown_path(query_dir / 'queries.csv')}` (one row per case, query count, "
             "region and metric; the score of each count is in column `adversarial`), the universal table from "
             f"`{shown_path(universal_dir / 'results.csv')}` (attacks `universal` and `{CONTROL}`, one row per scored "
             f"`model`, case, region and metric) and "
             f"`{shown_path(universal_dir / 'universal' / 'record.json')}` (how the "
             "perturbation was learned; `delta.npz` beside it).", "",
             "## Square attack (queries only)", "",
             f"Model `{qrows['model'].iloc[0]}`, split `{qrun['config'].get('split')}`, L∞ ε = "
             f"{float(qopts.get('eps', float('nan')))}/255, query budget {qopts.get('queries')} per case, seed "
             f"{qrun['config'].get('seed')}. The attack reads only the model's predictions; each candidate costs one "
             "query. Each count scores the most damaging input found so far.", "",
             "| queries | cases | mean WT Dice | min | max |", "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {int(r.queries)} | {int(r.cases)} | {r.mean:.3f} | {r.min:.3f} | {r.max:.3f} |"
              for r in qt.itertuples()]
    lines += ["", f"![WT Dice vs queries]({rel.as_posix()})", "",
              "## Universal perturbation", "",
              f"Learned on `{learned.get('train_split')}` crops of the source `{learned.get('source')}` "
              f"(ε = {float(learned.get('eps'))}/255, {learned.get('epochs')} epochs, {learned.get('crops_per_case')} "
              f"crops per case, step {float(learned.get('step'))}/255, seed {learned.get('seed')}), tiled over the "
              f"unseen `{urun['config'].get('split')}` cases and scored on every model. Control: uniform random sign "
              f"+-eps/255 in the brain mask, seeded per case (attack `{CONTROL}`).", "",
              "| target | cases | clean WT | universal δ | random-sign control | p (universal < control) |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.model} | {r.cases} | {r.clean:.3f} | {r.universal:.3f} | {r.control:.3f} | "
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
        print(json.dumps(render(args.query, args.universal, args.figures, args.doc)))
    except VolrobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
