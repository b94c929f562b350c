"""Checkpoints: one file with weights, model name and config, preprocessing, labels, inference and provenance.

Saved with ``torch.save`` (only tensors and plain Python values) and always loaded with ``weights_only=True``,
so a file carrying a pickle payload is refused. Loading never uses ``strict=False``: a mismatch is an error.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from volrob.data.labels import get_convention, out_channels_for
from volrob.data.preprocess import PreprocessConfig
from volrob.errors import CheckpointError, ConfigError
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.io import atomic_path

FORMAT = "volrob-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """Everything needed to rebuild and use a trained model exactly as it was trained."""

    model_name: str
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    preprocessing: PreprocessConfig
    normalisation: dict[str, list[float]]  # {"mean": [...], "std": [...]} applied inside the predictor
    label_convention: str
    output_mode: str
    modalities: list[str]
    inference: SlidingWindowConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] | None = None  # optimizer/scheduler/epoch, only in "last" checkpoints
    path: Path | None = None
    sha256: str | None = None

    def build_model(self) -> nn.Module:
        """The network with these weights, loaded strictly."""
        from volrob import models

        try:
            net = models.create(self.model_name, **self.model_config)
        except ConfigError as err:
            raise CheckpointError(f"cannot rebuild model {self.model_name!r}: {err}", path=self.path) from None
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            detail = " ".join(first[1:3]) if len(first) > 1 else first[0]
            raise CheckpointError(
                f"weights do not fit model {self.model_name!r} (another architecture or config?): {detail[:300]}",
                path=self.path,
            ) from None
        return net

    def build_predictor(self, window: SlidingWindowConfig | None = None) -> Predictor:
        """Network + normalisation + sliding window (the checkpoint's own window unless one is given)."""
        net = self.build_model()
        net.eval()
        return Predictor(net, mean=self.normalisation["mean"], std=self.normalisation["std"],
                         window=window or self.inference, output_mode=self.output_mode)

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": {"name": self.model_name, "config": _plain(self.model_config)},
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "preprocessing": self.preprocessing.to_dict(),
            "normalisation": {k: [float(x) for x in v] for k, v in self.normalisation.items()},
            "labels": {"convention": self.label_convention, "output_mode": self.output_mode,
                       "modalities": list(self.modalities)},
            "inference": self.inference.to_dict(),
            "provenance": _plain(self.provenance),
            "training_state": self.training_state,  # optimizer state keeps its int keys: not passed through _plain
        }


def _plain(value: Any) -> Any:
    """Built-in types only (tuples to lists, str/number subclasses and numpy scalars to their base type), so
    configs compare equal after a round trip and ``weights_only`` loading accepts every value."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, Path):
        return str(value)
    return value


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write ``ckpt`` atomically; returns the path. Records the file's sha256 on ``ckpt``."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(ckpt.to_payload(), buf)
    data = buf.getvalue()
    try:  # never write a file that our own loader would refuse
        torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"refusing to save: payload is not weights-only loadable ({str(err)[-200:]})",
                              path=path) from None
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    ckpt.path, ckpt.sha256 = path, hashlib.sha256(data).hexdigest()
    return path


def load_checkpoint(path: str | Path, *, expect_model: str | None = None, map_location: str = "cpu") -> Checkpoint:
    """Read a checkpoint safely (``weights_only=True``) and validate its structure.

    ``expect_model``: error unless the checkpoint holds that architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file does not exist", path=path)
    data = path.read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError("corrupt or truncated checkpoint (not a torch zip archive; a raw pickle is refused too)",
                              path=path)
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"a pickled {found.group(1)} object" if found else "content that is not plain weights"
        raise CheckpointError(f"refused: holds {what} (unsafe to load; volrob checkpoints hold only tensors and "
                              "plain values)", path=path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"corrupt or truncated checkpoint: {reason}", path=path) from None
    ckpt = _from_payload(payload, path)
    ckpt.sha256 = hashlib.sha256(data).hexdigest()
    if expect_model is not None and ckpt.model_name != expect_model:
        raise CheckpointError(f"holds model {ckpt.model_name!r}, expected {expect_model!r}", path=path)
    return ckpt


def _from_payload(payload: Any, path: Path) -> Checkpoint:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise CheckpointError(f"not a volrob checkpoint: {what}", path=path)

    need(isinstance(payload, dict) and payload.get("format") == FORMAT, f"missing format marker {FORMAT!r}")
    need(payload.get("version") == VERSION, f"unsupported version {payload.get('version')!r}")
    for key in ("model", "state_dict", "preprocessing", "normalisation", "labels", "inference"):
        need(isinstance(payload.get(key), dict), f"missing section {key!r}")
    model, labels = payload["model"], payload["labels"]
    need(isinstance(model.get("name"), str) and isinstance(model.get("config"), dict), "bad model section")
    need(all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values()), "state_dict holds non-tensors")
    try:
        get_convention(labels.get("convention"))
        out_channels_for(labels.get("output_mode"))
        pre = PreprocessConfig.from_dict(payload["preprocessing"])
        window = SlidingWindowConfig.from_dict(payload["inference"])
    except ConfigError as err:
        raise CheckpointError(f"invalid metadata: {err}", path=path) from None
    norm = payload["normalisation"]
    need(isinstance(norm.get("mean"), list) and isinstance(norm.get("std"), list), "bad normalisation section")
    return Checkpoint(
        model_name=model["name"], model_config=dict(model["config"]), state_dict=dict(payload["state_dict"]),
        preprocessing=pre, normalisation={"mean": list(norm["mean"]), "std": list(norm["std"])},
        label_convention=labels["convention"], output_mode=labels["output_mode"],
        modalities=list(labels.get("modalities", [])), inference=window,
        provenance=dict(payload.get("provenance") or {}), training_state=payload.get("training_state"), path=path,
    )
