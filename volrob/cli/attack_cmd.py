"""``volrob attack --checkpoint CKPT --manifest FILE --attack NAME [--eps 8 --steps 20 ...] -o OUTDIR``."""

from __future__ import annotations

import argparse
from typing import Any

from volrob.cli.options import add_scoring_options, key_value, numbers, roi_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack", help="attack a manifest split with a checkpoint; clean vs adversarial scores",
        description="Attack every case of a split through the checkpoint's predictor (whole volumes, sliding "
                    "window) and write OUTDIR/results.csv (case x region x metric: clean, adversarial, "
                    "degradation, perturbation L-inf/L2 in 1/255 units, SSIM, PSNR, time, provenance), "
                    "summary.csv, run.json and the adversarial volumes (float32 NIfTI, source affine, values in "
                    "the [0, 1] attack space). Budgets are in 1/255 units of that space. Options not given keep "
                    "the attack's defaults; other attack options go through --param key=value.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint written by volrob train")
    src.add_argument("--model", metavar="PKG.MODULE:FACTORY",
                     help="any segmenter: a callable returning a torch.nn.Module, e.g. monai.networks.nets:UNet")
    ext = p.add_argument_group("external model (with --model)")
    ext.add_argument("--weights", help="torch.save'd state dict of the external model (weights only)")
    ext.add_argument("--model-arg", dest="model_args", action="append", type=key_value, default=[],
                     metavar="KEY=VALUE", help="keyword argument of the factory (repeatable, values parsed as YAML)")
    ext.add_argument("--roi", type=roi_size, default=[96, 96, 96], help="sliding-window ROI, e.g. 96,96,96")
    ext.add_argument("--output-mode", choices=["regions", "labels"], default="regions",
                     help="regions: 3 sigmoid channels TC/WT/ET; labels: softmax over background/NCR/ED/ET")
    ext.add_argument("--mean", type=numbers, help="per-channel mean the network expects on [0, 1] inputs")
    ext.add_argument("--std", type=numbers, help="per-channel std the network expects on [0, 1] inputs")
    p.add_argument("--manifest", required=True, help="data manifest JSON")
    p.add_argument("--attack", required=True, help="attack name (see volrob.attacks.available())")
    p.add_argument("--split", default="test", help="split to attack (default: test)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--eps", type=float, help="budget in 1/255 units (L-inf per voxel, or L2 of the volume)")
    p.add_argument("--norm", choices=["linf", "l2"], help="budget norm")
    p.add_argument("--steps", type=int, help="iterations")
    p.add_argument("--alpha", type=float, help="step size in 1/255 units")
    p.add_argument("--mask", choices=["brain", "none"], help="where the perturbation may act (default brain)")
    p.add_argument("--param", dest="params", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="any other attack option, e.g. --param restarts=3 --param q_max=20 (repeatable)")
    p.add_argument("--gradient", choices=["exact", "autograd", "tiles"],
                   help="sliding-window gradient: exact (memory-bounded, default), autograd (naive) or tiles "
                        "(published protocol: non-overlapping ROI tiles)")
    p.add_argument("--roi-crop", choices=["tumour", "centre"],
                   help="plain ROI-crop protocol: attack and score only one ROI-sized crop per case, centred on the "
                        "whole tumour or the volume centre (scores on the preprocessed grid)")
    p.add_argument("--seed", type=int, default=0, help="run seed; each case's attack seed derives from it")
    p.add_argument("--no-volumes", action="store_true", help="do not write adversarial volumes")
    add_scoring_options(p, replaces="results.csv")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.errors import ConfigError
    from volrob.robustness.attack_run import attack_manifest, format_attack_summary
    from volrob.robustness.model_source import ModelSource

    options = {k: v for k, v in (("eps", args.eps), ("norm", args.norm), ("steps", args.steps),
                                 ("alpha", args.alpha), ("mask", args.mask)) if v is not None}
    options.update(dict(args.params))
    window = {"gradient": args.gradient} if args.gradient else {}
    if args.model:
        model: Any = ModelSource.from_external(
            args.model, weights=args.weights, kwargs=dict(args.model_args), roi_size=tuple(args.roi),
            mean=args.mean, std=args.std, output_mode=args.output_mode, window=window)
    else:
        if args.weights or args.model_args:
            raise ConfigError("--weights and --model-arg go with --model, not with --checkpoint")
        model = args.checkpoint
    res = attack_manifest(model, args.manifest, args.out, attack=args.attack, attack_options=options,
                          split=args.split, seed=args.seed, device=args.device, empty_policy=args.empty_policy,
                          window=window, roi_crop=args.roi_crop,
                          save_volumes=not args.no_volumes, force=args.force, progress=not args.quiet)
    n = res.rows["case"].nunique()
    print(f"{args.attack} on {n} case(s), split {args.split!r}; results in {res.out_dir / 'results.csv'}")
    print(format_attack_summary(res.summary))
    return 0
