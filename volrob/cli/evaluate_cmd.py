"""``volrob evaluate --checkpoint CKPT --manifest FILE [--split test] -o OUTDIR``."""

from __future__ import annotations

import argparse

from volrob.cli.options import add_scoring_options, roi_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="sliding-window evaluation of a checkpoint on a manifest split",
        description="Segment every case of a manifest split with a checkpoint (MONAI sliding-window inference), "
                    "write OUTDIR/metrics.csv (one row per case x region x metric: dice, hd95 in mm, nsd), "
                    "OUTDIR/summary.csv, OUTDIR/run.json and predicted label maps (NIfTI, source affine, the "
                    "data's own label convention) and print a summary table.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file written by volrob train")
    p.add_argument("--manifest", required=True, help="data manifest JSON")
    p.add_argument("--split", default="test", help="which split to evaluate (default: test)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--roi", type=roi_size, help="sliding-window ROI, e.g. 96,96,96 (default: the checkpoint's)")
    p.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1)")
    p.add_argument("--blend", choices=["gaussian", "constant"], help="window blending")
    p.add_argument("--sw-batch-size", type=int, help="windows per forward pass")
    p.add_argument("--stitch-on-cpu", action="store_true", help="stitch windows on the CPU to save GPU memory")
    p.add_argument("--nsd-tolerance", type=float, default=1.0, help="surface Dice tolerance in mm")
    p.add_argument("--no-predictions", action="store_true", help="do not write predicted label maps")
    add_scoring_options(p, replaces="metrics.csv")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.evaluation.evaluate import evaluate
    from volrob.evaluation.summary import format_summary

    window = {k: v for k, v in (("roi_size", args.roi), ("overlap", args.overlap), ("mode", args.blend),
                                ("sw_batch_size", args.sw_batch_size),
                                ("stitch_device", "cpu" if args.stitch_on_cpu else None)) if v is not None}
    res = evaluate(args.checkpoint, args.manifest, args.out, split=args.split, window=window, device=args.device,
                   empty_policy=args.empty_policy, nsd_tolerance_mm=args.nsd_tolerance,
                   save_predictions=not args.no_predictions, force=args.force, progress=not args.quiet)
    n = res.rows["case"].nunique()
    print(f"{n} case(s), split {args.split!r}; metrics in {res.out_dir / 'metrics.csv'}")
    print(format_summary(res.summary))
    return 0
