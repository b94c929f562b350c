"""Bring your own segmenter: build a network from ``package.module:factory`` and load its saved weights safely."""

from __future__ import annotations

import hashlib
import importlib
import io
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from volrob.errors import CheckpointError, ConfigError

STATE_KEYS: tuple[str, ...] = ("state_dict", "model", "network", "net")
"""Keys under which saved files commonly nest the weights (MONAI bundles save the plain state dict)."""


def import_factory(spec: str) -> Any:
    """The callable named by ``package.module:attribute`` (e.g. ``monai.networks.nets:UNet``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--model must look like package.module:factory, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"--model {spec}: cannot import {module_name!r} ({err})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"--model {spec}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"--model {spec}: {attr!r} is not callable")
    return obj


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Weights from a file saved with ``torch.save`` (plain or nested state dict), read with ``weights_only=True``;
    returns the state dict and the file's sha256."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("weights file does not exist", path=path)
    data = path.read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError("not a torch zip archive (corrupt, truncated or a raw pickle)", path=path)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError("refused: holds pickled objects beyond plain weights (unsafe to load)",
                              path=path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"corrupt or truncated weights file: {str(err).splitlines()[0][:200]}",
                              path=path) from None
    for key in STATE_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"expected a state dict of tensors (optionally under one of {list(STATE_KEYS)})",
                              path=path)
    return dict(obj), hashlib.sha256(data).hexdigest()


def load_module(spec: str, weights: str | Path | None = None, **kwargs: Any) -> tuple[nn.Module, str | None]:
    """Build ``spec(**kwargs)`` and, when given, load ``weights`` strictly; returns the module (eval mode) and the
    weights' sha256."""
    factory = import_factory(spec)
    try:
        net = factory(**kwargs)
    except TypeError as err:
        raise ConfigError(f"--model {spec}: bad arguments {sorted(kwargs)} ({err})") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--model {spec}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    sha = None
    if weights is not None:
        state, sha = read_state_dict(weights)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            detail = " ".join(str(err).strip().splitlines()[:2])[:300]
            raise CheckpointError(f"weights do not fit {spec}: {detail}", path=weights) from None
    return net.eval(), sha
