"""``volrob universal``: learn one universal perturbation on a source model and test it on unseen cases and on
other architectures, beside a random-sign noise control of the same budget."""

from __future__ import annotations

import argparse
from pathlib import Path

from volrob.errors import ConfigError


def _target(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ConfigError(f"--target must be NAME=CHECKPOINT, got {text!r}")
    return name.strip(), path.strip()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "universal", help="universal perturbation: one ROI-sized delta tiled over whole volumes",
        description="Learn one ROI-sized perturbation on the source's training cases, tile it over unseen cases, "
                    "and score them on the source and every target beside a random-sign noise control. Writes "
                    "OUTDIR/universal.csv, universal_delta.npz, universal_record.json and universal.json.",
    )
    p.add_argument("--source", required=True, help="source checkpoint the perturbation is learned on")
    p.add_argument("--target", action="append", default=[], metavar="NAME=CKPT",
                   help="a target checkpoint (repeatable); the source is always scored too")
    p.add_argument("--manifest", required=True, help="dataset manifest JSON")
    p.add_argument("--train-split", default="train")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--eps", type=float, default=8.0, help="L-inf budget in 1/255 units")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--crops-per-case", type=int, default=2)
    p.add_argument("--step", type=float, default=1.0, help="signed-gradient step in 1/255 units")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--force", action="store_true", help="replace an existing universal.csv in OUTDIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.universal.run import summarise_universal, universal_experiment

    if not args.eps >= 0:
        raise ConfigError(f"--eps must be >= 0 (1/255 units), got {args.eps}")
    targets: dict[str, str] = {}
    for text in args.target:
        name, path = _target(text)
        if name in targets:
            raise ConfigError(f"--target name {name!r} is given twice")
        targets[name] = path
    if not Path(args.source).is_file():
        raise ConfigError("source checkpoint does not exist", path=args.source)
    for name, path in targets.items():
        if not Path(path).is_file():
            raise ConfigError(f"checkpoint of target {name!r} does not exist", path=path)
    res = universal_experiment(
        args.source, targets, args.manifest, train_split=args.train_split, eval_split=args.eval_split,
        eps=args.eps, epochs=args.epochs, crops_per_case=args.crops_per_case, step=args.step, seed=args.seed,
        out_dir=args.out, device=args.device, force=args.force, progress=not args.quiet,
    )
    print(f"universal delta: L-inf {res.record['delta_linf_255']:.2f}/255; results in "
          f"{res.out_dir / 'universal.csv'}")
    print(f"{'target':<20}  {'WT dice clean':>13}  {'universal':>9}  {'noise':>7}")
    for row in summarise_universal(res.rows).itertuples():
        print(f"{row.target:<20}  {row.clean:>13.3f}  {row.universal:>9.3f}  {row.noise:>7.3f}")
    return 0
