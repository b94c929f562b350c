"""One fold's checkpoint, read without running pickled code.

nnU-Net's trainer saves a dict (``network_weights``, ``optimizer_state``, ``init_args``, ``trainer_name``,
``inference_allowed_mirroring_axes``, training logs) with ``torch.save``; its logs hold numpy scalars, which
``torch.load(weights_only=True)`` refuses unless numpy's scalar constructor, ``numpy.dtype`` and the dtype classes
are allowed. They are allowed here only for the duration of the load (a context manager), under both the numpy 2
(``numpy._core``) and numpy 1 (``numpy.core``) names. Anything else in the file is refused.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volrob.errors import CheckpointError

_SCALAR_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                 np.float16, np.float32, np.float64)


def numpy_globals() -> list[Callable[..., Any] | tuple[Callable[..., Any], str]]:
    """The numpy globals a trainer's checkpoint needs: numpy scalars and their dtypes, nothing else."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    return [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar"), np.dtype,
            *(type(np.dtype(t)) for t in _SCALAR_TYPES)]


@dataclass(frozen=True)
class FoldCheckpoint:
    """What volrob takes from one fold's checkpoint file."""

    path: Path
    sha256: str
    weights: dict[str, torch.Tensor]
    configuration: str | None
    trainer: str | None
    mirror_axes: tuple[int, ...] | None


def _read(path: Path) -> tuple[Any, str]:
    """The unpickled object (restricted globals) and the file's sha256."""
    data = path.read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError("not a torch zip archive (corrupt, truncated or a raw pickle)", path=path)
    try:
        with torch.serialization.safe_globals(numpy_globals()):
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        raise CheckpointError("refused: holds pickled objects beyond weights and numpy scalars (unsafe to load)"
                              + (f": {found.group(1)}" if found else ""), path=path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"corrupt or truncated checkpoint: {str(err).splitlines()[0][:200]}",
                              path=path) from None
    return obj, hashlib.sha256(data).hexdigest()


def _mirror_axes(value: Any, path: Path) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) and 0 <= v <= 2 for v in value):
        return tuple(int(v) for v in value)
    raise CheckpointError(f"inference_allowed_mirroring_axes must be axes in 0..2 or null, got {value!r}", path=path)


def load_fold_checkpoint(path: Path) -> FoldCheckpoint:
    """The weights and inference settings of one fold's checkpoint (``weights_only=True`` load)."""
    if not path.is_file():
        raise CheckpointError("checkpoint does not exist", path=path)
    obj, sha = _read(path)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("network_weights"), Mapping):
        raise CheckpointError("not an nnU-Net checkpoint: no 'network_weights'", path=path)
    weights = dict(obj["network_weights"])
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError("network_weights holds something other than tensors", path=path)
    init = obj.get("init_args") if isinstance(obj.get("init_args"), Mapping) else {}
    config = init.get("configuration")
    trainer = obj.get("trainer_name")
    return FoldCheckpoint(path, sha, weights, config if isinstance(config, str) else None,
                          trainer if isinstance(trainer, str) else None,
                          _mirror_axes(obj.get("inference_allowed_mirroring_axes"), path))
