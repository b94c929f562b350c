"""``volrob query --checkpoint CKPT --manifest FILE [--eps 8 --queries 1000 --checkpoints 10 30 100 300] -o OUTDIR``."""

from __future__ import annotations

import argparse

from volrob.cli.options import add_scoring_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query", help="Dice vs queries of the black-box Square attack (square3d) on a manifest split",
        description="Attack every case of a split with square3d, a query-based black-box attack that sees only the "
                    "model's predictions, and score the clean input (queries 0) and the best adversarial input "
                    "after each checkpoint query count and after the full budget. Writes OUTDIR/queries.csv (case "
                    "x queries x region x metric, with provenance), run.json and queries.png (mean WT Dice vs "
                    "queries). The budget eps is in 1/255 units of the [0, 1] attack space.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint written by volrob train")
    p.add_argument("--manifest", required=True, help="data manifest JSON")
    p.add_argument("--split", default="test", help="split to attack (default: test)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--eps", type=float, default=8.0, help="L-inf budget in 1/255 units (default: 8)")
    p.add_argument("--queries", type=int, default=1000, help="query budget per case (default: 1000)")
    p.add_argument("--checkpoints", type=int, nargs="+", default=[10, 30, 100, 300], metavar="Q",
                   help="increasing query counts at which to score (the budget is always scored)")
    p.add_argument("--p-init", type=float, default=0.05, help="initial fraction of voxels per cube (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="run seed; each case's attack seed derives from it")
    add_scoring_options(p, replaces="queries.csv")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.report.query_plot import query_plot
    from volrob.robustness.query_curve import mean_by_queries, query_curve

    res = query_curve(args.checkpoint, args.manifest, args.out, split=args.split, eps=args.eps,
                      queries=args.queries, checkpoints=list(args.checkpoints), p_init=args.p_init, seed=args.seed,
                      device=args.device, empty_policy=args.empty_policy, force=args.force,
                      progress=not args.quiet)
    png = query_plot(res.rows, res.out_dir / "queries.png")
    n = res.rows["case"].nunique()
    print(f"square3d on {n} case(s), split {args.split!r}; results in {res.out_dir / 'queries.csv'}, figure {png}")
    print(f"{'queries':>8}  mean WT Dice")
    for q, value in mean_by_queries(res.rows).items():
        print(f"{q:>8}  {value:.4f}" + ("  (clean)" if q == 0 else ""))
    return 0
