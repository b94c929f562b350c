"""``volrob run STUDY.yaml -o OUTDIR``: a whole study from one file, every stage cached (see volrob.study)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from volrob.cli.options import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="a whole study from one YAML file: data, training, attacks, transfer, defences, comparison",
        description="Run every stage of a study config (see configs/studies/): synthesise or read the data, train "
                    "the listed architectures (or take given checkpoints), evaluate them, run the white-box grid, "
                    "the transfer matrix, robust fine-tunes and their comparison. Each stage is cached by the hash "
                    "of its inputs under OUTDIR/<stage>/: a rerun continues where it stopped, and changing one "
                    "stage's parameters reruns only that stage and what reads its outputs. OUTDIR/study.json says "
                    "where each stage's outputs are. Under torchrun, training uses DDP and the units of work are "
                    "spread over the processes.",
    )
    p.add_argument("config", help="study YAML (see configs/studies/quickstart.yaml)")
    p.add_argument("-o", "--out", required=True, help="output folder (reused to continue)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study key, e.g. --set seed=1 --set device=cpu (repeatable)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for tensor work")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def _show(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / name
    return pd.read_csv(path) if path.is_file() else None


def run(args: argparse.Namespace) -> int:
    from volrob import distributed
    from volrob.cli.runner import set_threads
    from volrob.cli.text_tables import cell_lines, matrix_text
    from volrob.study.config import load_study
    from volrob.study.runner import run_study

    set_threads(args)
    cfg = load_study(args.config, args.overrides)
    result = run_study(cfg, args.out, progress=not args.quiet)
    if not distributed.env_info().is_main:
        return 0
    print(f"\nstudy {cfg.name!r} finished in {result.seconds:.0f} s; index {result.out_dir / 'study.json'}")
    if cfg.data.synth is not None:
        print("(synthetic phantoms: these numbers describe models trained on synthetic data, not real glioma scans)")
    evaluate = _show(result.stages["evaluate"], "summary.csv")
    if evaluate is not None and not evaluate.empty:
        wt = evaluate[(evaluate["region"] == "WT") & (evaluate["metric"] == "dice")]
        print("clean WT Dice: " + ", ".join(f"{r.model} {r.mean:.3f}" for r in wt.itertuples()))
    for stage in ("grid", "compare"):
        summary = _show(result.stages[stage], "summary.csv") if stage in result.stages else None
        if summary is not None:
            print(f"{stage} (WT Dice clean -> adversarial):")
            print(cell_lines(summary, "WT"))
    matrices = _show(result.stages["transfer"], "matrices.csv") if "transfer" in result.stages else None
    if matrices is not None:
        names = list(dict.fromkeys(matrices["source"]))
        print("transfer:\n" + matrix_text(matrices, names, list(dict.fromkeys(matrices["model"]))))
    for stage, folder in result.stages.items():
        print(f"  {stage:<9} {folder}")
    if result.report is not None:
        print(f"\nreport: {result.report}")
    return 0
