"""``volrob transfer CONFIG -o OUTDIR``: transfer-attack matrices between architectures (resumable)."""

from __future__ import annotations

import argparse

from volrob.cli.options import add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transfer", help="transfer-attack matrices: craft on each source once, score on every target",
        description="Craft every (source, attack, budget, case) perturbation once, score it on every target, and "
                    "write OUTDIR/results.csv (tidy rows with full provenance), matrices.csv (mean Dice drop, "
                    "attack success rate, transfer ratio), heatmaps/*.png, sanity.json and, with a bands section, "
                    "bands.csv. A rerun resumes: finished units are never recomputed. Under torchrun the units are "
                    "spread over the processes.",
    )
    p.add_argument("config", help="run config YAML (see configs/transfer/demo.yaml); transfer: true is implied")
    p.add_argument("-o", "--out", required=True, help="output folder (reused to resume)")
    p.add_argument("--fail-on-flags", action="store_true", help="exit with code 1 if a sanity flag is raised")
    add_run_options(p, config=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.cli.runner import config_from_file, execute, finish
    from volrob.cli.text_tables import matrix_text, run_line
    from volrob.evaluation.sanity import format_flags

    args.overrides = ["transfer=true", *args.overrides]
    cfg = config_from_file(args)
    result = execute("transfer", cfg, args)
    if result.tables is None:
        return 0
    out = result.outputs
    print(run_line(result))
    print(matrix_text(out.matrices, cfg.source_names, cfg.target_names))
    print(format_flags(out.flags))
    return finish(result, fail_on_flags=args.fail_on_flags)
