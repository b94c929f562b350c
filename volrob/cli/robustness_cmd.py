"""``volrob robustness CONFIG -o OUTDIR [--set key=value ...]``: a resumable models × attacks × budgets grid."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness", help="run a resumable grid of models x attacks x budgets, with sanity flags",
        description="Run every cell (model x attack x budget) of a grid config with volrob attack's engine into "
                    "OUTDIR/cells/<id>/, skipping cells already finished with the same parameters (a finished "
                    "cell with other parameters is an error). Writes OUTDIR/results.csv, summary.csv, grid.json "
                    "and sanity.json, and prints the sanity flags. With two or more models also comparison.csv and "
                    "comparison.png (each model against the config's 'reference', default the only model with "
                    "defended false; no comparison when that is ambiguous) and a short comparison table. Relative "
                    "paths in the config are resolved against the current directory.",
    )
    p.add_argument("config", help="grid config YAML (see configs/robustness/demo.yaml)")
    p.add_argument("-o", "--out", required=True, help="output folder (reused to resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set seed=1 --set device=cpu (repeatable)")
    p.add_argument("--fail-on-flags", action="store_true", help="exit with code 1 if any sanity flag is raised")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.robustness.compare import format_comparison
    from volrob.robustness.grid import load_grid_config, run_grid
    from volrob.robustness.sanity import format_flags

    cfg = load_grid_config(args.config, args.overrides)
    res = run_grid(cfg, args.out, progress=not args.quiet)
    n = res.summary["cell"].nunique()
    print(f"{n} cell(s), {len(res.computed)} computed now; results in {res.out_dir / 'results.csv'}")
    wt = res.summary[res.summary["region"] == "WT"]
    for row in wt.itertuples():
        print(f"  {row.cell:<48}  WT Dice {row.clean_dice:.3f} -> {row.adversarial_dice:.3f} "
              f"({row.rel_dice_drop:.1%} drop)")
    if res.comparison is not None:
        print(f"comparison against {res.comparison['reference'].iloc[0]!r} (WT; {res.out_dir / 'comparison.csv'}):")
        print(format_comparison(res.comparison))
    print(format_flags(res.flags))
    return 1 if args.fail_on_flags and any(f.raised for f in res.flags) else 0
