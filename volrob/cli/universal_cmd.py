"""``volrob universal``: learn one universal perturbation on a source model and test it on unseen cases and on
other architectures, beside a random-sign noise control of the same budget (flags or a config file)."""

from __future__ import annotations

import argparse
from typing import Any

from volrob.cli.options import add_run_options
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
                    "OUTDIR/universal/ (delta.npz, record.json), results.csv (attacks 'universal' and "
                    "'sign_noise'), summary.csv and run.json. Give a config file with a 'universal' section, or the "
                    "flags below.",
    )
    p.add_argument("config", nargs="?", help="a run config YAML with a universal: section")
    p.add_argument("--source", help="source checkpoint the perturbation is learned on")
    p.add_argument("--source-name", default="source", help="the source's label in the tables (default: source)")
    p.add_argument("--target", action="append", default=[], metavar="NAME=CKPT",
                   help="a target checkpoint (repeatable); the source is always scored too")
    p.add_argument("--manifest", help="dataset manifest JSON")
    p.add_argument("--train-split", default="train")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--eps", type=float, default=8.0, help="L-inf budget in 1/255 units")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--crops-per-case", type=int, default=2)
    p.add_argument("--step", type=float, default=1.0, help="signed-gradient step in 1/255 units")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True, help="output folder (a rerun resumes there)")
    add_run_options(p, config=True)
    p.set_defaults(func=run)


def _raw(args: argparse.Namespace) -> dict[str, Any]:
    if not args.source or not args.manifest:
        raise ConfigError("give a config file, or --source and --manifest")
    models = [{"name": args.source_name, "checkpoint": args.source}]
    for text in args.target:
        name, path = _target(text)
        if name in [m["name"] for m in models]:
            raise ConfigError(f"--target name {name!r} is given twice (the source is {args.source_name!r})")
        models.append({"name": name, "checkpoint": path})
    return {"manifest": args.manifest, "split": args.eval_split, "models": models, "seed": args.seed,
            "universal": {"source": args.source_name, "train_split": args.train_split, "eps": args.eps,
                          "epochs": args.epochs, "crops_per_case": args.crops_per_case, "step": args.step}}


def run(args: argparse.Namespace) -> int:
    from volrob.cli.runner import config_from_file, config_from_flags, execute, finish
    from volrob.cli.text_tables import universal_lines
    from volrob.engine.universal import universal_cells

    if args.config:
        if args.source or args.manifest or args.target:
            raise ConfigError("--source, --manifest and --target cannot be combined with a config file")
        cfg = config_from_file(args)
        if cfg.universal is None:
            raise ConfigError("universal: the config has no universal section", path=args.config)
    else:
        cfg = config_from_flags(_raw(args), args)
    result = execute("universal", cfg, args, extra_cells=universal_cells)
    if result.tables is None:
        return 0
    record = (result.out_dir / "universal" / "record.json")
    print(f"universal perturbation in {record.parent}; results in {result.out_dir / 'results.csv'}")
    print(universal_lines(result.tables.results, cfg.region))
    return finish(result)
