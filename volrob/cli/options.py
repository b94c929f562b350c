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


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def case_ids(text: str) -> list[str]:
    """Comma-separated case ids."""
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if not ids:
        raise argparse.ArgumentTypeError(f"expected comma-separated case ids, got {text!r}")
    return ids


def add_run_options(p: argparse.ArgumentParser, *, config: bool) -> None:
    """Options every engine command shares: which cases, device, threads, resume/replace, progress.
    ``config``: the command reads a config file, so ``--set`` overrides apply."""
    if config:
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set seed=1 --set window.sw_batch_size=4 (repeatable)")
    p.add_argument("--max-cases", type=positive_int, metavar="N",
                   help="only the first N cases of the split (manifest order): try a run on a few cases first")
    p.add_argument("--cases", type=case_ids, metavar="ID,ID", help="only these cases (comma-separated ids)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (under torchrun each rank takes cuda:LOCAL_RANK)")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads for tensor work (default: PyTorch's choice; set it on a shared machine)")
    p.add_argument("--force", action="store_true",
                   help="start over: replace what an earlier run wrote in OUTDIR (a rerun without it resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_metric_options(p)


def metric_names(text: str) -> list[str]:
    """Comma-separated metric names (``dice,hd95_brats,nsd``); the config checks them (one-line errors)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def add_metric_options(p: argparse.ArgumentParser) -> None:
    """``--metrics`` and ``--challenge``: the metric set of every row (docs/scoring.md)."""
    from volrob.evaluation.challenges import CHALLENGES
    from volrob.evaluation.metric_set import METRICS

    p.add_argument("--metrics", type=metric_names, metavar="M,M",
                   help=f"metrics of every row, from {', '.join(METRICS)} (default: by the data's label convention: "
                        "BraTS data dice,hd95_brats,nsd plus lesion_dice,lesion_hd95 for brats2023/brats2024; other "
                        "data dice,hd95,nsd)")
    p.add_argument("--challenge", choices=list(CHALLENGES),
                   help="BraTS challenge whose lesion-wise parameters and miss penalty apply (default: gli for "
                        "brats2023 data, gli2024 for brats2024)")


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config keys given as flags by :func:`add_run_options`."""
    return {k: v for k, v in (("max_cases", args.max_cases), ("cases", args.cases), ("device", args.device),
                              ("metrics", getattr(args, "metrics", None)),
                              ("lesionwise", getattr(args, "challenge", None)))
            if v is not None}


def as_overrides(values: dict[str, Any]) -> list[str]:
    """``--set`` strings for a mapping of top-level keys (values as YAML flow)."""
    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in values.items()]


def folds(text: str) -> list[int] | str:
    """``--folds``: comma-separated fold numbers (``0,1,2``) or ``all``."""
    if text.strip() == "all":
        return "all"
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fold numbers like 0,1,2 or 'all', got {text!r}") from None
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct fold numbers >= 0, got {text!r}")
    return values
