"""Entry point of the ``volrob`` command: one sub-command module per verb, errors as one line with exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from volrob import __version__
from volrob.errors import VolrobError
from volrob.utils.host_memory import retain_unless_disabled

# Each module ``volrob.cli.<name>_cmd`` defines ``register(subparsers)``, which adds its parser and sets
# ``func`` (``Callable[[argparse.Namespace], int]``) as the parser default.
COMMANDS: tuple[str, ...] = ("models", "synth", "manifest", "train", "evaluate", "attack", "robustness", "transfer",
                             "query", "universal", "run", "inspect", "score", "report")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every sub-command registered)."""
    parser = argparse.ArgumentParser(
        prog="volrob",
        description="Measure and improve the adversarial robustness of 3D medical segmentation models.",
    )
    parser.add_argument("--version", action="version", version=f"volrob {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"volrob.cli.{name}_cmd").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    retain_unless_disabled()  # reuse freed host memory across steps (VOLROB_RETAIN_HOST_MEMORY=0 turns it off)
    rank = _rank_prefix()
    try:
        return int(args.func(args) or 0)
    except VolrobError as err:
        print(f"{rank}volrob {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{rank}volrob {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``volrob ... | head``): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    finally:
        from volrob import distributed

        distributed.teardown()


def _rank_prefix() -> str:
    """``[rank N] `` under torchrun with several processes (every rank reports its own errors), else empty."""
    from volrob import distributed

    try:
        info = distributed.env_info()
    except VolrobError:
        return ""
    return f"[rank {info.rank}] " if info.distributed else ""


if __name__ == "__main__":
    sys.exit(main())
