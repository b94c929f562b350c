"""The one run writer: overwrite guard, one atomic file per unit of work, the run record, resume checks.

Layout of a run folder::

    run.json                      what ran: command, configuration, plan, environment, timings (rank 0)
    units/<cell>/<case>.json      one attack unit: parameters, attack record, perturbation size, scores per target
    units/<cell>/<case>.npz       its perturbation (kept for transfer runs and on request)
    clean/<model>/<case>.json     one clean unit: the model's clean scores of the case
    ranks/<rank>.json             which process computed what (pid, host, device, units)
    views/<cell>.{npz,json,png}   each attack cell's worst case in three planes (:mod:`volrob.engine.views`)
    results.csv, summary.csv, …   merged tables, written last by rank 0 (:mod:`volrob.engine.tables`)

A unit file is written once its unit is complete, by the rank that computed it, through a temporary file and a
rename, so an interrupted run leaves whole units or none. A rerun skips every unit whose file holds the same
parameters, recomputes missing or failed units, and stops before any work naming the first unit whose recorded
parameters differ (use ``--force`` to start over, or another output folder).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volrob.errors import ConfigError
from volrob.io import atomic_write_bytes, atomic_write_text
from volrob.utils.config import to_plain

RUN_FILE = "run.json"
OWNED = ("units", "clean", "ranks", "adversarial", "predictions", "heatmaps", "bands", "universal", "views")
"""Folders a run creates (and ``--force`` removes); tables are removed by name."""
TABLES = ("results.csv", "summary.csv", "queries.csv", "bands.csv", "bands_summary.csv", "matrices.csv",
          "comparison.csv", "comparison.png", "queries.png", "failures.csv", "sanity.json", RUN_FILE)


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data (tuples to lists, numpy scalars to numbers) so stored and expected compare."""
    return json.loads(json.dumps(to_plain(value), sort_keys=True, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def differences(stored: dict[str, Any], expected: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two parameter records."""
    out = []
    for key in sorted(set(stored) | set(expected)):
        a, b = stored.get(key), expected.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


class RunStore:
    """Paths, the overwrite guard and atomic reads/writes of one run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths ------------------------------------------------------------------------------------------------
    def unit_path(self, cell: str, case: str) -> Path:
        return self.root / "units" / cell / f"{case}.json"

    def delta_path(self, cell: str, case: str) -> Path:
        return self.root / "units" / cell / f"{case}.npz"

    def clean_path(self, model: str, case: str) -> Path:
        return self.root / "clean" / model / f"{case}.json"

    # -- guard ------------------------------------------------------------------------------------------------
    def open(self, command: str, *, force: bool) -> None:
        """Check the folder may hold this run: empty, or a run of the same ``command`` (resumed). ``force``
        removes what an earlier run wrote here (only volrob's own files and folders)."""
        record = self.root / RUN_FILE
        if force:
            for name in OWNED:
                shutil.rmtree(self.root / name, ignore_errors=True)
            for name in TABLES:
                (self.root / name).unlink(missing_ok=True)
            return
        if record.is_file():
            try:
                previous = json.loads(record.read_text(encoding="utf-8")).get("command")
            except (OSError, ValueError, AttributeError):
                previous = None
            if previous != command:
                raise ConfigError(f"already holds a {previous or 'unreadable'} run; use --force to replace it or "
                                  "choose another output folder", path=self.root)
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise ConfigError("is not empty and holds no volrob run; choose another output folder (or --force to "
                              "write into it)", path=self.root)

    # -- units ------------------------------------------------------------------------------------------------
    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        """A unit file's payload, or None when missing or unreadable (an unreadable unit is recomputed)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def write(path: Path, payload: dict[str, Any]) -> None:
        """Write a unit file atomically."""
        atomic_write_text(path, json.dumps(canonical(payload), separators=(",", ":")) + "\n")

    def check(self, path: Path, params: dict[str, Any], name: str) -> dict[str, Any] | None:
        """The stored payload of a finished unit with the same parameters; None when it is missing, unreadable or
        failed (to be computed); ConfigError naming the unit when its parameters differ."""
        payload = self.read(path)
        if payload is None or payload.get("status") != "ok":
            return None
        diff = differences(payload.get("params") or {}, canonical(params))
        if diff:
            raise ConfigError(f"unit {name} was computed with other parameters ({', '.join(diff[:6])}); use --force "
                              "to start over or choose another output folder", path=self.root)
        return payload

    def save_delta(self, cell: str, case: str, delta: torch.Tensor) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, delta=delta.detach().cpu().float().numpy())
        atomic_write_bytes(self.delta_path(cell, case), buf.getvalue())

    def load_delta(self, cell: str, case: str) -> torch.Tensor | None:
        try:
            with np.load(self.delta_path(cell, case)) as data:
                return torch.from_numpy(np.array(data["delta"], dtype=np.float32))
        except (OSError, KeyError, ValueError):
            return None

    def write_json(self, name: str, data: Any) -> Path:
        path = self.root / name
        atomic_write_text(path, json.dumps(canonical(data), indent=2) + "\n")
        return path

    def write_table(self, name: str, frame: Any) -> Path:
        path = self.root / name
        atomic_write_text(path, frame.to_csv(index=False))
        return path
