"""The options of an ``nnunet:FOLDER`` model (``models[].options`` in a config; ``--folds`` and
``--checkpoint-name`` on the command line), checked into one value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from volrob.data.labels import CONVENTIONS
from volrob.errors import ConfigError
from volrob.sources.nnunet.folder import DEFAULT_CHECKPOINT, Fold

OPTION_KEYS = ("folds", "checkpoint_name", "configuration", "mirror", "labels", "modalities")


@dataclass(frozen=True)
class NnunetOptions:
    """``folds`` None: every fold present; ``configuration`` None: the checkpoint's; ``labels`` None: from the names
    in dataset.json; ``modalities`` None: from dataset.json's channel names."""

    folds: tuple[Fold, ...] | None = None
    checkpoint_name: str = DEFAULT_CHECKPOINT
    configuration: str | None = None
    mirror: bool = True
    labels: str | None = None
    modalities: tuple[str, ...] | None = None


def _fold(value: Any) -> Fold:
    if value == "all":
        return "all"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"options.folds: expected fold numbers >= 0 or 'all', got {value!r}")
    return value


def _folds(value: Any) -> tuple[Fold, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    folds = tuple(_fold(v) for v in items)
    if not folds or len(set(folds)) != len(folds):
        raise ConfigError(f"options.folds: expected distinct folds, got {value!r}")
    return folds


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"options.{key}: expected a non-empty string, got {value!r}")
    return value


def parse_options(options: Mapping[str, Any]) -> NnunetOptions:
    """Checked options (unknown keys are refused by the source registry before this)."""
    name = _text(options.get("checkpoint_name", DEFAULT_CHECKPOINT), "checkpoint_name")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"options.checkpoint_name: a file name inside fold_k/, got {name!r}")
    config = options.get("configuration")
    mirror = options.get("mirror", True)
    if not isinstance(mirror, bool):
        raise ConfigError(f"options.mirror: expected true or false, got {mirror!r}")
    labels = options.get("labels")
    if labels is not None and labels not in CONVENTIONS:
        raise ConfigError(f"options.labels: unknown label convention {labels!r}; choose one of {sorted(CONVENTIONS)}")
    mods = options.get("modalities")
    if mods is not None and (not isinstance(mods, (list, tuple)) or not all(isinstance(m, str) and m for m in mods)):
        raise ConfigError(f"options.modalities: expected a list of modality names, got {mods!r}")
    return NnunetOptions(_folds(options.get("folds")), name,
                         None if config is None else _text(config, "configuration"), mirror, labels,
                         None if mods is None else tuple(mods))
