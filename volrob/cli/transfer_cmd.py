"""``volrob transfer CONFIG -o OUTDIR``: transfer-attack matrices between architectures (resumable)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transfer", help="transfer-attack matrices: craft on each source once, evaluate on every target",
        description="Craft every (source, attack, budget, case) perturbation once, score it on every target, and "
                    "write OUTDIR/transfer.csv (tidy rows with full provenance), matrices.csv (mean Dice drop, "
                    "attack success rate, transfer ratio), heatmaps/*.png, sanity.json and, with a bands section, "
                    "bands.csv. Rerunning resumes: finished units are never recomputed.",
    )
    p.add_argument("config", help="transfer config YAML (see configs/transfer/demo.yaml)")
    p.add_argument("-o", "--out", required=True, help="output folder (reused to resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set split=val (repeatable)")
    p.add_argument("--fail-on-flags", action="store_true", help="exit with code 1 if a sanity flag is raised")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.transfer.config import load_transfer_config
    from volrob.transfer.engine import run_transfer
    from volrob.transfer.outputs import format_matrix, write_outputs

    cfg = load_transfer_config(args.config, args.overrides)
    result = run_transfer(cfg, args.out, progress=not args.quiet)
    outputs = write_outputs(cfg, result)
    print(f"{len(result.crafted)} perturbation(s) crafted now; results in {result.out_dir / 'transfer.csv'}")
    print(format_matrix(outputs.matrices, cfg.source_names, cfg.target_names))
    if outputs.flags:
        for hit in outputs.flags:
            print(f"!! SANITY FLAG: blackbox_stronger_than_whitebox: {hit['text']}")
    else:
        print("sanity: black-box never stronger than white-box (ok)")
    return 1 if args.fail_on_flags and outputs.flags else 0
