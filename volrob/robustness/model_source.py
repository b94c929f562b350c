"""The model under attack, whether a volrob checkpoint or an external ``package.module:factory`` network."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volrob.checkpoint import load_checkpoint
from volrob.data.manifest import MODALITIES
from volrob.data.preprocess import PreprocessConfig
from volrob.external import load_module
from volrob.inference.predictor import Predictor, SlidingWindowConfig


@dataclass
class ModelSource:
    """A ready predictor plus what is needed to feed it and to name it in results."""

    name: str
    predictor: Predictor
    preprocessing: PreprocessConfig
    modalities: list[str]
    sha256: str | None
    origin: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_checkpoint(cls, path: str | Path, window: dict[str, Any] | None = None) -> ModelSource:
        """A volrob checkpoint, with optional sliding-window overrides."""
        ckpt = load_checkpoint(path)
        win = SlidingWindowConfig.from_dict({**ckpt.inference.to_dict(), **(window or {})})
        return cls(ckpt.model_name, ckpt.build_predictor(win), ckpt.preprocessing, list(ckpt.modalities),
                   ckpt.sha256, {"checkpoint": str(path), "provenance": ckpt.provenance})

    @classmethod
    def from_external(cls, spec: str, *, weights: str | Path | None = None, kwargs: dict[str, Any] | None = None,
                      roi_size: tuple[int, int, int] = (96, 96, 96), mean: list[float] | None = None,
                      std: list[float] | None = None, output_mode: str = "regions",
                      modalities: list[str] | None = None, preprocessing: PreprocessConfig | None = None,
                      window: dict[str, Any] | None = None) -> ModelSource:
        """Any network: ``spec(**kwargs)`` with ``weights`` loaded strictly, default volrob preprocessing."""
        net, sha = load_module(spec, weights, **(kwargs or {}))
        mods = list(modalities or MODALITIES)
        win = SlidingWindowConfig.from_dict({"roi_size": list(roi_size), **(window or {})})
        predictor = Predictor(net, mean=mean or [0.0] * len(mods), std=std or [1.0] * len(mods), window=win,
                              output_mode=output_mode)
        origin = {"model": spec, "weights": None if weights is None else str(weights), "kwargs": kwargs or {},
                  "mean": mean, "std": std}
        return cls(spec, predictor, preprocessing or PreprocessConfig(), mods, sha, origin)
