"""An nnU-Net v2 trained model folder: ``plans.json``, ``dataset.json`` and ``fold_k/<checkpoint>`` files.

nnU-Net names the folder ``TRAINER__PLANS__CONFIGURATION`` and keeps one sub-folder per fold (``fold_0`` ...,
``fold_all`` for a model trained on every case).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volrob.errors import CheckpointError, ConfigError

Fold = int | str  # a fold number, or "all"
DEFAULT_CHECKPOINT = "checkpoint_final.pth"
_FOLD_DIR = re.compile(r"fold_(\d+|all)")


@dataclass(frozen=True)
class TrainedFolder:
    """The folder's JSON files, read and checked for the keys volrob uses."""

    path: Path
    plans: dict[str, Any]
    dataset: dict[str, Any]

    @property
    def configuration_from_name(self) -> str | None:
        """The configuration in nnU-Net's folder name ``TRAINER__PLANS__CONFIGURATION``, if it is named so."""
        parts = self.path.name.split("__")
        return parts[2] if len(parts) == 3 and parts[2] else None

    def checkpoint(self, fold: Fold, name: str) -> Path:
        return self.path / f"fold_{fold}" / name

    def folds_present(self, checkpoint_name: str) -> list[Fold]:
        """Every ``fold_k`` sub-folder holding ``checkpoint_name``: numbered folds in order, else ``all``."""
        found: list[Fold] = []
        for sub in self.path.iterdir():
            m = _FOLD_DIR.fullmatch(sub.name)
            if m and sub.is_dir() and (sub / checkpoint_name).is_file():
                found.append(int(m.group(1)) if m.group(1) != "all" else "all")
        numbered = sorted(f for f in found if isinstance(f, int))
        return list(numbered) if numbered else [f for f in found if f == "all"]

    def select_folds(self, requested: Sequence[Fold] | None, checkpoint_name: str) -> list[Fold]:
        """``requested`` folds (each must hold ``checkpoint_name``), or every fold present when None."""
        if requested is None:
            folds = self.folds_present(checkpoint_name)
            if not folds and checkpoint_name != DEFAULT_CHECKPOINT:
                raise ConfigError(f"options.checkpoint_name: no fold_k/{checkpoint_name} in {self.path}")
            if not folds:
                raise CheckpointError(f"no fold_k/{checkpoint_name} in this nnU-Net folder", path=self.path)
            return folds
        for fold in requested:
            path = self.checkpoint(fold, checkpoint_name)
            if not path.is_file():
                present = self.folds_present(checkpoint_name)
                raise ConfigError(f"options.folds: fold {fold} has no {checkpoint_name} in {self.path} (folds with "
                                  f"it: {present or 'none'})")
        return list(requested)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError("missing: an nnU-Net trained model folder holds plans.json and dataset.json", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"not readable JSON ({str(err).splitlines()[0][:200]})", path=path) from None
    if not isinstance(data, dict):
        raise CheckpointError("expected a JSON object", path=path)
    return data


def read_folder(location: str | Path) -> TrainedFolder:
    """The trained folder at ``location`` with its ``plans.json`` and ``dataset.json``."""
    path = Path(location).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"nnunet model folder does not exist: {path}")
    plans, dataset = _read_json(path / "plans.json"), _read_json(path / "dataset.json")
    if not isinstance(plans.get("configurations"), dict) or not plans["configurations"]:
        raise CheckpointError("plans.json has no 'configurations'", path=path / "plans.json")
    if not isinstance(dataset.get("labels"), dict):
        raise CheckpointError("dataset.json has no 'labels' mapping", path=path / "dataset.json")
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise CheckpointError("dataset.json has no 'channel_names' mapping", path=path / "dataset.json")
    return TrainedFolder(path, plans, dataset)
