"""``volrob query --checkpoint CKPT --manifest FILE [--eps 8 --queries 1000 --checkpoints 10 30 100 300] -o OUTDIR``
(or a config file whose attacks are ``square3d``)."""

from __future__ import annotations

import argparse

from volrob.cli.evaluate_cmd import add_data_options, add_model_options
from volrob.cli.options import add_run_options

ATTACK = "square3d"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query", help="Dice vs queries of the black-box Square attack (square3d) on a manifest split",
        description="Attack every case of a split with square3d, a query-based black-box attack that sees only the "
                    "model's outputs, and score the clean input (queries 0) and, after each checkpoint query count, "
                    "the most damaging input found so far: of the inputs the attack held at counts up to that one "
                    "(the clean input included), the one with the lowest Dice of the run's region. So the curve "
                    "never rises; 'selected_queries' says which input each row scores. Writes OUTDIR/queries.csv "
                    "(case x queries x region x metric, with provenance), results.csv (the full budget), run.json "
                    "and queries.png. The budget eps is in 1/255 units of the [0, 1] attack space.",
    )
    add_data_options(p, split_help="split to attack (default: test)")
    add_model_options(p, required=False)
    p.add_argument("--eps", type=float, default=8.0, help="L-inf budget in 1/255 units (default: 8)")
    p.add_argument("--queries", type=int, default=1000, help="query budget per case (default: 1000)")
    p.add_argument("--checkpoints", type=int, nargs="+", default=[10, 30, 100, 300], metavar="Q",
                   help="increasing query counts at which to score (the budget is always scored)")
    p.add_argument("--p-init", type=float, default=0.05, help="initial fraction of voxels per cube (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="run seed; each case's attack seed derives from it")
    add_run_options(p, config=True)
    p.set_defaults(func=run)


def checkpoints_with_budget(checkpoints: list[int], queries: int) -> list[int]:
    """``checkpoints`` with the budget ``queries`` appended when it is not already the last one."""
    return list(checkpoints) if checkpoints and checkpoints[-1] == queries else [*checkpoints, queries]


def run(args: argparse.Namespace) -> int:
    from volrob.cli.evaluate_cmd import refuse_flags_with_config
    from volrob.cli.runner import config_from_file, config_from_flags, execute, finish, model_entry
    from volrob.cli.text_tables import query_lines
    from volrob.errors import ConfigError

    if args.config:
        refuse_flags_with_config(args)
        cfg = config_from_file(args)
        if not cfg.attacks or any(a.attack != ATTACK or not a.options.get("checkpoints") for a in cfg.attacks):
            raise ConfigError(f"attacks: volrob query runs {ATTACK} with options.checkpoints (the query counts to "
                              "score at); use volrob robustness for other attacks", path=args.config)
    else:
        if not args.manifest or not (args.checkpoint or args.model):
            raise ConfigError("give a config file, or --manifest with --checkpoint or --model")
        options = {"eps": args.eps, "queries": args.queries, "p_init": args.p_init,
                   "checkpoints": checkpoints_with_budget(args.checkpoints, args.queries)}
        cfg = config_from_flags({
            "manifest": args.manifest, "split": args.split, "models": [model_entry(args)],
            "attacks": [{"attack": ATTACK, "options": options}], "seed": args.seed,
            "empty_policy": args.empty_policy, "nsd_tolerance_mm": args.nsd_tolerance}, args)
    result = execute("query", cfg, args)
    if result.tables is None:
        return 0
    n = result.tables.queries["case"].nunique()
    print(f"{ATTACK} on {n} case(s), split {cfg.split!r}; results in {result.out_dir / 'queries.csv'}, figure "
          f"{result.out_dir / 'queries.png'}")
    print(query_lines(result.tables.queries, cfg.region))
    return finish(result)
