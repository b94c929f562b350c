"""``volrob train CONFIG [--set key=value ...] [--resume]``; under ``torchrun --nproc-per-node N -m volrob train``
one process per rank trains with DistributedDataParallel (see :mod:`volrob.training.ddp`).

Bad input under several processes: every rank meets it (the same config, or an error shared by
:mod:`volrob.training.ddp`), rank 0 prints the one line and every rank exits with its code; ranks other than 0
leave only once rank 0 has printed (torchrun stops the whole job as soon as one process exits). An error only one
rank meets (say, one of its cases is unreadable) is printed by that rank. Lines start with ``[rank N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from volrob.distributed import DistInfo
    from volrob.errors import VolrobError
    from volrob.training.config import TrainConfig


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


PEER_GRACE_S = 30.0
"""How long a rank other than 0 whose configuration failed waits for rank 0 to report the same failure (torchrun
stops it then) before reporting it itself."""


def run(args: argparse.Namespace) -> int:
    from volrob import distributed
    from volrob.errors import ConfigError, VolrobError
    from volrob.training.config import load_train_config

    info = distributed.env_info()
    try:
        try:
            if args.resume and args.force:
                raise ConfigError("--resume and --force cannot be combined")
            cfg = load_train_config(args.config, args.overrides)
            if info.distributed:
                info, _ = distributed.setup(cfg.train.device)  # join torchrun's process group
        except VolrobError:
            if not info.is_main:  # rank 0 has the same arguments: let it report, unless it does not fail
                time.sleep(PEER_GRACE_S)
            raise
        return _train(args, cfg, info)
    except VolrobError as err:
        if not distributed.active():
            raise
        return _report(err, info)
    finally:
        distributed.teardown()


def _report(err: VolrobError, info: DistInfo) -> int:
    """An error under several processes: printed once, by rank 0 when every rank shares it (the others wait until
    it has), else by the rank that met it."""
    from volrob import distributed
    from volrob.training.ddp import SharedError

    shared = isinstance(err, SharedError)
    if not shared or err.report:
        print(f"[rank {info.rank}] volrob train: error: {err}", file=sys.stderr, flush=True)
    if shared:
        distributed.barrier()
    return err.exit_code


def _train(args: argparse.Namespace, cfg: TrainConfig, info: DistInfo) -> int:
    from volrob.training.ddp import agree
    from volrob.training.trainer import Trainer

    trainer = agree(lambda: Trainer(cfg, progress=not args.quiet, config_source=str(args.config), dist=info))
    result = trainer.run(resume=args.resume, force=args.force)
    if info.is_main:
        print(f"best checkpoint: {result.best_checkpoint} (epoch {result.best_epoch}, "
              f"val mean Dice {result.best_val_dice:.3f})" if result.best_val_dice >= 0
              else f"checkpoint: {result.best_checkpoint} (no validation cases)")
    return 0
