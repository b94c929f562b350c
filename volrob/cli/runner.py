"""What every engine command does around the kernel: threads, the config with flag overrides, the run, the exit
code. Each command module only maps its flags to a config and prints its tables."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from volrob.cli.options import as_overrides, run_overrides
from volrob.engine.config import RunConfig, load_run_config, parse_run_config
from volrob.engine.kernel import ExtraCells, RunResult, run_experiment
from volrob.errors import ConfigError
from volrob.sources import source_options, source_scheme
from volrob.utils.config import build_with_overrides


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (intra-op CPU threads) when given."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def config_from_file(args: argparse.Namespace) -> RunConfig:
    """The command's config file with ``--set`` overrides and the run flags (``--max-cases`` …) applied."""
    return load_run_config(args.config, [*args.overrides, *as_overrides(run_overrides(args))])


def config_from_flags(raw: dict[str, Any], args: argparse.Namespace) -> RunConfig:
    """A config built from a command's flags, with its ``--set`` overrides and the run flags applied."""
    overrides = [*getattr(args, "overrides", []), *as_overrides(run_overrides(args))]
    return build_with_overrides(RunConfig, raw, overrides, parse_run_config)


def model_entry(args: argparse.Namespace) -> dict[str, Any]:
    """The ``models`` entry of ``--checkpoint`` or ``--model`` (external factory) flags."""
    options = folder_options(args)
    if getattr(args, "checkpoint", None):
        if getattr(args, "weights", None) or getattr(args, "model_args", None):
            raise ConfigError("--weights and --model-arg go with --model, not with --checkpoint")
        if options:
            raise ConfigError("--folds, --checkpoint-name and --trust-bundle go with --model nnunet:FOLDER or "
                              "bundle:FOLDER, not with --checkpoint")
        return {"name": args.name or _checkpoint_label(args.checkpoint), "checkpoint": args.checkpoint}
    found = source_scheme(args.model)
    if found is not None:
        return _folder_entry(args, found, options)
    if options:
        raise ConfigError(f"--folds, --checkpoint-name and --trust-bundle go with --model nnunet:FOLDER or "
                          f"bundle:FOLDER, not with --model {args.model}")
    entry: dict[str, Any] = {"name": args.name or args.model.rpartition(":")[2].replace(".", "_"),
                             "model": args.model, "model_args": dict(args.model_args),
                             "output_mode": args.output_mode}
    for key, value in (("weights", args.weights), ("mean", args.mean), ("std", args.std),
                       ("roi_size", getattr(args, "roi", None))):
        if value is not None:
            entry[key] = value
    return entry


def folder_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model-folder options given as flags (``--folds``, ``--checkpoint-name``, ``--trust-bundle``)."""
    out: dict[str, Any] = {}
    if getattr(args, "folds", None) is not None:
        out["folds"] = args.folds
    if getattr(args, "checkpoint_name", None):
        out["checkpoint_name"] = args.checkpoint_name
    if getattr(args, "trust_bundle", False):
        out["trust"] = True
    return out


def _folder_entry(args: argparse.Namespace, found: tuple[str, str], options: dict[str, Any]) -> dict[str, Any]:
    """The ``models`` entry of ``--model nnunet:FOLDER`` / ``bundle:FOLDER`` with its flags."""
    scheme, location = found
    given = [flag for flag, value in (("--weights", args.weights), ("--model-arg", args.model_args),
                                      ("--mean", args.mean), ("--std", args.std),
                                      ("--output-mode", args.output_mode != "regions")) if value]
    if given:
        raise ConfigError(f"{' '.join(given)}: a {scheme} model brings its own weights, normalisation and outputs")
    accepted = source_options(scheme)
    wrong = [k for k in options if k not in accepted]
    if wrong:
        flags = {"folds": "--folds", "checkpoint_name": "--checkpoint-name", "trust": "--trust-bundle"}
        raise ConfigError(f"{' '.join(flags[k] for k in wrong)} do(es) not apply to {scheme} models")
    name = args.name or f"{scheme}_{Path(location.rstrip('/')).name or scheme}"
    entry: dict[str, Any] = {"name": _label(name), "model": args.model, "options": options}
    if getattr(args, "roi", None) is not None:
        entry["roi_size"] = args.roi
    return entry


def _label(text: str) -> str:
    """``text`` as a model label (letters, digits, '_', '.', '-')."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"
    return re.sub(r"_{2,}", "_", out)


def _checkpoint_label(path: str) -> str:
    """A checkpoint's label in tables: its model name (the file must exist; the kernel loads it properly)."""
    from volrob.checkpoint import load_checkpoint

    if not Path(path).is_file():
        raise ConfigError("checkpoint file does not exist", path=path)
    return load_checkpoint(path).model_name


def execute(command: str, cfg: RunConfig, args: argparse.Namespace, *,
            extra_cells: ExtraCells | None = None) -> RunResult:
    """Run ``cfg`` into ``args.out``."""
    set_threads(args)
    return run_experiment(cfg, args.out, command=command, progress=not args.quiet, force=args.force,
                          extra_cells=extra_cells)


def finish(result: RunResult, echo: Callable[[str], None] = print, *, fail_on_flags: bool = False) -> int:
    """The exit code of a finished run (failures listed): 0, or 1 when units failed (or flags were raised and
    ``fail_on_flags``)."""
    if result.tables is None:
        return 0
    failures = result.tables.failures
    if not failures.empty:
        echo(f"!! {len(failures)} unit(s) could not be computed (the tables leave them out; failures.csv lists "
             "them; a rerun retries them):")
        for row in failures.head(10).itertuples():
            echo(f"   {row.unit}: {row.reason}")
    flags = result.outputs.flags if result.outputs is not None else []
    raised = any(f.raised for f in flags)
    return 1 if not failures.empty or (fail_on_flags and raised) else 0
