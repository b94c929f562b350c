"""Where a bundle's files are: the inference config, the metadata and the weights, and reading the first two as plain
data (JSON, or YAML through ``yaml.safe_load``: nothing in them is evaluated here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from volrob.errors import CheckpointError, ConfigError

CONFIG_NAMES = ("configs/inference.json", "configs/inference.yaml", "configs/inference.yml")
METADATA_NAME = "configs/metadata.json"
WEIGHTS_NAME = "models/model.pt"


@dataclass(frozen=True)
class BundleFiles:
    """The files of one bundle folder that volrob reads."""

    folder: Path
    config: Path
    metadata: Path | None
    weights: Path


def locate(location: str, *, config: str | None = None, weights: str | None = None) -> BundleFiles:
    """The config (``config`` relative to the folder, else ``configs/inference.json|yaml``), metadata (if present)
    and weights (``weights``, else ``models/model.pt``) of the bundle folder ``location``."""
    folder = Path(location).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError("bundle folder does not exist", path=folder)
    if config is not None:
        cfg_path = folder / config
        if not cfg_path.is_file():
            raise ConfigError(f"options.config: no file {config!r} in the bundle", path=folder)
    else:
        found = [folder / n for n in CONFIG_NAMES if (folder / n).is_file()]
        if not found:
            raise ConfigError(f"not a MONAI bundle: no {' or '.join(CONFIG_NAMES)}", path=folder)
        cfg_path = found[0]
    weights_path = folder / (weights or WEIGHTS_NAME)
    if not weights_path.is_file():
        hint = ""
        if weights is None and (folder / "models" / "model.ts").is_file():
            hint = " (models/model.ts is TorchScript, which is code; volrob loads weights only)"
        raise CheckpointError(f"bundle weights file does not exist{hint}", path=weights_path)
    meta = folder / METADATA_NAME
    return BundleFiles(folder, cfg_path, meta if meta.is_file() else None, weights_path)


def read_data(path: Path) -> dict[str, Any]:
    """A JSON or YAML mapping as plain data; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read ({err.__class__.__name__})", path=path) from None
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"not valid JSON (line {err.lineno}: {err.msg})", path=path) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML ({' '.join(str(err).split())})", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=path)
    return data
