"""``volrob robustness CONFIG -o OUTDIR [--set key=value ...]``: a resumable models × attacks × budgets grid."""

from __future__ import annotations

import argparse

from volrob.cli.options import add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness", help="a resumable white-box grid of models x attacks x budgets, with sanity flags",
        description="Run every unit (model x attack x budget x case) of a config white-box into OUTDIR (each unit "
                    "one file under units/; a rerun computes only what is missing, and stops naming any finished "
                    "unit whose parameters differ). Writes results.csv, summary.csv, run.json and sanity.json (what "
                    "each raised flag means and what to try), and with two or more models comparison.csv and "
                    "comparison.png (each model against the config's 'reference', default the only model with "
                    "defended false). Under torchrun the units are spread over the processes. Relative paths in "
                    "the config are resolved against the current directory.",
    )
    p.add_argument("config", help="run config YAML (see configs/robustness/)")
    p.add_argument("-o", "--out", required=True, help="output folder (reused to resume)")
    p.add_argument("--fail-on-flags", action="store_true", help="exit with code 1 if any sanity flag is raised")
    add_run_options(p, config=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.cli.runner import config_from_file, execute, finish
    from volrob.cli.text_tables import cell_lines, run_line
    from volrob.errors import ConfigError
    from volrob.evaluation.compare import format_comparison
    from volrob.evaluation.sanity import format_flags

    cfg = config_from_file(args)
    if cfg.transfer:
        raise ConfigError("transfer: true is a transfer matrix; run it with volrob transfer", path=args.config)
    if not cfg.attacks:
        raise ConfigError("attacks: the grid has no attacks (volrob evaluate scores clean inputs)", path=args.config)
    result = execute("robustness", cfg, args)
    if result.tables is None:
        return 0
    out = result.outputs
    print(run_line(result))
    print(cell_lines(out.summary, cfg.region))
    if out.comparison is not None:
        print(f"comparison against {out.comparison['reference'].iloc[0]!r} ({cfg.region}; "
              f"{result.out_dir / 'comparison.csv'}):")
        print(format_comparison(out.comparison, region=cfg.region))
    print(format_flags(out.flags))
    return finish(result, fail_on_flags=args.fail_on_flags)
