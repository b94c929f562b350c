"""``volrob train CONFIG [--set key=value ...] [--resume]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a segmentation model from a YAML config",
        description="Train a model described by a YAML config (see configs/). Writes best.pt, last.pt, log.csv and "
                    "config.json into the config's output_dir. Any key can be overridden with --set "
                    "section.key=value (values are parsed as YAML).",
    )
    p.add_argument("config", help="YAML training config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last.pt")
    p.add_argument("--force", action="store_true", help="start over even if output_dir already holds a run")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.training.config import load_train_config
    from volrob.training.trainer import Trainer

    if args.resume and args.force:
        from volrob.errors import ConfigError

        raise ConfigError("--resume and --force cannot be combined")
    cfg = load_train_config(args.config, args.overrides)
    trainer = Trainer(cfg, progress=not args.quiet, config_source=str(args.config))
    result = trainer.run(resume=args.resume, force=args.force)
    print(f"best checkpoint: {result.best_checkpoint} (epoch {result.best_epoch}, "
          f"val mean Dice {result.best_val_dice:.3f})" if result.best_val_dice >= 0
          else f"checkpoint: {result.best_checkpoint} (no validation cases)")
    return 0
