"""Where a transfer run keeps its units of work, each written atomically so an interrupted run resumes cleanly.

``OUTDIR/crafted/<source>/<cell>/<case>.npz`` holds the perturbation ``delta = x_adv - x`` (float32, on the
preprocessed grid of the attack space) of one (source, attack, budget, case); its record (parameters, seed, loss
history, seconds) sits next to it as ``<case>.json``, written first, so the ``.npz`` marks completion.
``OUTDIR/scores/<source>/<cell>/<target>/<case>.json`` holds that perturbation's result rows on one target, and
``OUTDIR/clean/<target>/<case>.json`` the target's clean scores. A unit whose file is missing or unreadable is
recomputed; one that is present is never recomputed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volrob.io import atomic_write_bytes, atomic_write_text


class TransferStore:
    """Paths and atomic reads/writes of a transfer run's units under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def delta_path(self, source: str, cell: str, case: str) -> Path:
        return self.root / "crafted" / source / cell / f"{case}.npz"

    def scores_path(self, source: str, cell: str, target: str, case: str) -> Path:
        return self.root / "scores" / source / cell / target / f"{case}.json"

    def clean_path(self, target: str, case: str) -> Path:
        return self.root / "clean" / target / f"{case}.json"

    def load_delta(self, source: str, cell: str, case: str) -> tuple[torch.Tensor, dict[str, Any]] | None:
        """The stored perturbation and its record, or None when the unit is not finished."""
        path = self.delta_path(source, cell, case)
        try:
            with np.load(path) as data:
                delta = torch.from_numpy(np.array(data["delta"], dtype=np.float32))
            record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, KeyError, ValueError):
            return None
        return delta, record

    def save_delta(self, source: str, cell: str, case: str, delta: torch.Tensor, record: dict[str, Any]) -> None:
        path = self.delta_path(source, cell, case)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=1, default=str) + "\n")
        buf = io.BytesIO()
        np.savez_compressed(buf, delta=delta.detach().cpu().float().numpy())
        atomic_write_bytes(path, buf.getvalue())

    @staticmethod
    def read_rows(path: Path) -> list[dict[str, Any]] | None:
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return rows if isinstance(rows, list) else None

    @staticmethod
    def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(rows, default=float) + "\n")
