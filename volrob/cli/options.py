"""Argument types and option groups shared by several sub-commands."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from volrob.evaluation.empty_policy import POLICIES


def key_value(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as YAML (``steps=20`` -> 20, ``channels=[8,16]`` -> list)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"cannot parse value of {key!r}: {raw!r}") from None


def numbers(text: str, kind: type = float) -> list[Any]:
    """Comma- or space-separated numbers."""
    try:
        return [kind(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def roi_size(text: str) -> list[int]:
    """Three positive integers, e.g. ``96,96,96``."""
    vals = numbers(text, int)
    if len(vals) != 3 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers like 96,96,96, got {text!r}")
    return vals


def add_scoring_options(p: argparse.ArgumentParser, *, replaces: str) -> None:
    """``--device``, ``--empty-policy``, ``--force`` (replacing ``replaces`` in OUTDIR) and ``--quiet``."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--empty-policy", choices=POLICIES, default="brats",
                   help="scores when prediction or ground truth is empty (see docs/metrics.md)")
    p.add_argument("--force", action="store_true", help=f"replace an existing {replaces} in OUTDIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
