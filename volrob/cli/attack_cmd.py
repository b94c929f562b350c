"""``volrob attack --checkpoint CKPT --manifest FILE --attack NAME [--eps 8 --steps 20 ...] -o OUTDIR``."""

from __future__ import annotations

import argparse

from volrob.cli.evaluate_cmd import add_data_options, add_model_options, add_window_options, window_flags
from volrob.cli.options import add_run_options, key_value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack", help="attack a manifest split with one model; clean vs adversarial scores",
        description="Attack every case of a split through the model's predictor (whole volumes, sliding window) "
                    "and write OUTDIR/results.csv (case x region x metric: clean, adversarial, degradation, "
                    "perturbation L-inf/L2 in 1/255 units, SSIM, PSNR, seconds, provenance), summary.csv, run.json "
                    "and the adversarial volumes (float32 NIfTI, source affine, values in the [0, 1] attack space). "
                    "Budgets are in 1/255 units of that space. Options not given keep the attack's defaults; other "
                    "attack options go through --param key=value. A rerun resumes; a case that cannot be read is "
                    "listed in failures.csv and the others go on.",
    )
    add_data_options(p, split_help="split to attack (default: test)")
    add_model_options(p, required=False)
    add_window_options(p)
    p.add_argument("--attack", help="attack name (see volrob.attacks.available())")
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
    add_run_options(p, config=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.cli.evaluate_cmd import refuse_flags_with_config
    from volrob.cli.runner import config_from_file, config_from_flags, execute, finish, model_entry
    from volrob.cli.text_tables import attack_summary, cell_lines
    from volrob.errors import ConfigError

    if args.config:
        refuse_flags_with_config(args)
        cfg = config_from_file(args)
    else:
        if not args.manifest or not (args.checkpoint or args.model) or not args.attack:
            raise ConfigError("give a config file, or --manifest, --attack and --checkpoint or --model")
        options = {k: v for k, v in (("eps", args.eps), ("norm", args.norm), ("steps", args.steps),
                                     ("alpha", args.alpha), ("mask", args.mask)) if v is not None}
        options.update(dict(args.params))
        if "seed" in options:
            raise ConfigError("--param seed: give the seed as the run's --seed, not as an attack option")
        window = {**window_flags(args), **({"gradient": args.gradient} if args.gradient else {})}
        cfg = config_from_flags({
            "manifest": args.manifest, "split": args.split, "models": [model_entry(args)],
            "attacks": [{"attack": args.attack, "options": options}], "window": window, "seed": args.seed,
            "roi_crop": args.roi_crop, "empty_policy": args.empty_policy, "nsd_tolerance_mm": args.nsd_tolerance,
            "outputs": {"volumes": not args.no_volumes}}, args)
    result = execute("attack", cfg, args)
    if result.tables is None:
        return 0
    summary = result.outputs.summary
    n = result.tables.results["case"].nunique()
    print(f"{len(result.cells)} attack cell(s) on {n} case(s), split {cfg.split!r}; results in "
          f"{result.out_dir / 'results.csv'}")
    if len(result.cells) == 1:
        print(attack_summary(summary))
    else:
        print(cell_lines(summary, cfg.region))
    return finish(result)
