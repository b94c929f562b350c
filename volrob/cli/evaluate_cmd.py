"""``volrob evaluate --checkpoint CKPT --manifest FILE [--split test] -o OUTDIR`` (or a config file)."""

from __future__ import annotations

import argparse

from volrob.cli.options import add_run_options, folds, key_value, numbers, roi_size
from volrob.evaluation.empty_policy import POLICIES


def add_model_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    """``--checkpoint`` or ``--model`` (with its external-model options), and ``--name``."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--checkpoint", help="checkpoint written by volrob train")
    src.add_argument("--model", metavar="PKG.MODULE:FACTORY|nnunet:FOLDER|bundle:FOLDER",
                     help="any segmenter: a callable returning a torch.nn.Module (e.g. monai.networks.nets:UNet), "
                          "an nnU-Net v2 trained model folder (nnunet:FOLDER) or a MONAI bundle (bundle:FOLDER)")
    p.add_argument("--name", help="the model's label in the tables (default: the checkpoint's model name, or the "
                                  "factory's name)")
    ext = p.add_argument_group("external model (with --model)")
    ext.add_argument("--weights", help="torch.save'd state dict of the external model (weights only)")
    ext.add_argument("--model-arg", dest="model_args", action="append", type=key_value, default=[],
                     metavar="KEY=VALUE", help="keyword argument of the factory (repeatable, values parsed as YAML)")
    ext.add_argument("--output-mode", choices=["regions", "labels"], default="regions",
                     help="regions: 3 sigmoid channels TC/WT/ET; labels: softmax over background/NCR/ED/ET")
    ext.add_argument("--mean", type=numbers, help="per-channel mean the network expects on [0, 1] inputs")
    ext.add_argument("--std", type=numbers, help="per-channel std the network expects on [0, 1] inputs")
    folder = p.add_argument_group("model folders (with --model nnunet:FOLDER or bundle:FOLDER)")
    folder.add_argument("--folds", type=folds, help="nnU-Net folds to average, e.g. 0,1,2,3,4 or all (default: every "
                                                    "fold_k folder present)")
    folder.add_argument("--checkpoint-name", help="nnU-Net checkpoint file in each fold (default checkpoint_final.pth)")
    folder.add_argument("--trust-bundle", action="store_true",
                        help="allow a MONAI bundle's config to run code ($ expressions, targets outside "
                             "monai.networks.nets); only for bundles you trust")


def add_window_options(p: argparse.ArgumentParser) -> None:
    w = p.add_argument_group("sliding window (default: the checkpoint's; an external model's ROI is 96,96,96)")
    w.add_argument("--roi", type=roi_size, help="sliding-window ROI, e.g. 96,96,96 (a model that only accepts its "
                                                "training ROI refuses another)")
    w.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1)")
    w.add_argument("--blend", choices=["gaussian", "constant"], help="window blending")
    w.add_argument("--sw-batch-size", type=int, help="windows per forward pass")
    w.add_argument("--stitch-on-cpu", action="store_true", help="stitch windows on the CPU to save GPU memory")


def window_flags(args: argparse.Namespace) -> dict:
    """The run-level window overrides given as flags (``--roi`` applies to checkpoints too)."""
    return {k: v for k, v in (("roi_size", args.roi), ("overlap", args.overlap), ("mode", args.blend),
                              ("sw_batch_size", args.sw_batch_size),
                              ("stitch_device", "cpu" if args.stitch_on_cpu else None)) if v is not None}


def add_data_options(p: argparse.ArgumentParser, *, split_help: str) -> None:
    p.add_argument("config", nargs="?", help="a run config YAML instead of the flags below (see volrob.engine.config)")
    p.add_argument("--manifest", help="data manifest JSON")
    p.add_argument("--split", default="test", help=split_help)
    p.add_argument("-o", "--out", required=True, help="output folder (a rerun resumes there)")
    p.add_argument("--empty-policy", choices=POLICIES, default="brats",
                   help="scores when prediction or ground truth is empty (see docs/metrics.md)")
    p.add_argument("--nsd-tolerance", type=float, default=1.0, help="surface Dice tolerance in mm")


def refuse_flags_with_config(args: argparse.Namespace) -> None:
    """A config file says everything: data and model flags beside it are an error, not silently ignored."""
    from volrob.errors import ConfigError

    given = [f"--{k.replace('_', '-')}" for k in ("manifest", "checkpoint", "model", "weights", "roi", "overlap",
                                                  "folds", "checkpoint_name", "trust_bundle")
             if getattr(args, k, None)]
    if given:
        raise ConfigError(f"{' '.join(given)} cannot be combined with a config file; set those in the file or with "
                          "--set")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="sliding-window evaluation of a model on a manifest split",
        description="Segment every case of a manifest split (MONAI sliding-window inference) and write "
                    "OUTDIR/results.csv (one row per case x model x region x metric: dice, hd95 in mm, nsd; the "
                    "score is in the 'clean' column), OUTDIR/summary.csv, OUTDIR/run.json and predicted label maps "
                    "(NIfTI, source affine, the data's own label convention) and print a summary table. Give either "
                    "a config file (any number of models) or --checkpoint/--model with --manifest.",
    )
    add_data_options(p, split_help="which split to evaluate (default: test)")
    add_model_options(p, required=False)
    add_window_options(p)
    p.add_argument("--no-predictions", action="store_true", help="do not write predicted label maps")
    add_run_options(p, config=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.cli.runner import config_from_file, config_from_flags, execute, finish, model_entry
    from volrob.errors import ConfigError
    from volrob.evaluation.summary import format_summary

    if args.config:
        refuse_flags_with_config(args)
        cfg = config_from_file(args)
    else:
        if not args.manifest or not (args.checkpoint or args.model):
            raise ConfigError("give a config file, or --manifest with --checkpoint or --model")
        cfg = config_from_flags({
            "manifest": args.manifest, "split": args.split, "models": [model_entry(args)],
            "window": window_flags(args), "empty_policy": args.empty_policy,
            "nsd_tolerance_mm": args.nsd_tolerance, "outputs": {"predictions": not args.no_predictions}}, args)
    result = execute("evaluate", cfg, args)
    if result.tables is None:
        return 0
    summary = result.outputs.summary
    n = result.tables.results["case"].nunique()
    print(f"{n} case(s), split {cfg.split!r}; results in {result.out_dir / 'results.csv'}")
    for model in summary["model"].unique() if not summary.empty else []:
        if summary["model"].nunique() > 1:
            print(f"model {model}:")
        print(format_summary(summary[summary["model"] == model].drop(columns="model")))
    return finish(result)
