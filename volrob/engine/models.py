"""The models of a run: volrob checkpoints, external ``package.module:factory`` networks and ensembles of them,
each loaded once and kept on the run's device, with the predictors that craft under per-attack window overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from volrob.checkpoint import load_checkpoint
from volrob.data.manifest import MODALITIES
from volrob.data.preprocess import PreprocessConfig
from volrob.errors import ConfigError
from volrob.external import load_module
from volrob.inference.ensemble import EnsemblePredictor
from volrob.inference.predictor import Predictor, SlidingWindowConfig

if TYPE_CHECKING:
    from volrob.engine.config import ModelEntry, RunConfig

DEFAULT_EXTERNAL_ROI = (96, 96, 96)


@dataclass
class ModelSource:
    """A ready predictor plus what is needed to feed it and to name it in results."""

    name: str
    predictor: Predictor
    preprocessing: PreprocessConfig
    modalities: list[str]
    sha256: str | None
    origin: dict[str, Any] = field(default_factory=dict)
    defence: str | None = None
    """The training defence recorded in a volrob checkpoint ("none" for clean training); None when unknown."""

    def with_window(self, window: dict[str, Any]) -> Predictor:
        """A predictor over the same network and normalisation with ``window`` overrides of its settings."""
        base = self.predictor
        win = SlidingWindowConfig.from_dict({**base.window.to_dict(), **window})
        if tuple(win.roi_size) != tuple(base.window.roi_size) and self.origin.get("fixed_input"):
            raise ConfigError(f"window.roi_size: model {self.name} only accepts its ROI {list(base.window.roi_size)}")
        return Predictor(base.network, mean=base.mean.flatten().tolist(), std=base.std.flatten().tolist(),
                         window=win, output_mode=base.output_mode).to(base.mean.device).eval()

    @classmethod
    def from_checkpoint(cls, path: str, window: dict[str, Any] | None = None, *, name: str | None = None
                        ) -> ModelSource:
        """A volrob checkpoint with optional sliding-window overrides (a fixed-input model keeps its ROI)."""
        ckpt = load_checkpoint(path)
        win = SlidingWindowConfig.from_dict({**ckpt.inference.to_dict(), **(window or {})})
        fixed = _fixed_input(ckpt.model_name)
        if tuple(win.roi_size) != tuple(ckpt.inference.roi_size) and fixed:
            raise ConfigError(f"roi_size: model {ckpt.model_name} only accepts its training ROI "
                              f"{list(ckpt.inference.roi_size)}, got {list(win.roi_size)}")
        defence = ckpt.provenance.get("defence")
        return cls(name or ckpt.model_name, ckpt.build_predictor(win), ckpt.preprocessing, list(ckpt.modalities),
                   ckpt.sha256, {"checkpoint": str(path), "model": ckpt.model_name, "fixed_input": fixed,
                                "provenance": ckpt.provenance},
                   str(defence.get("name") or "none") if isinstance(defence, dict) else "none")

    @classmethod
    def from_external(cls, spec: str, *, weights: str | None = None, kwargs: dict[str, Any] | None = None,
                      roi_size: tuple[int, ...] = DEFAULT_EXTERNAL_ROI, mean: list[float] | None = None,
                      std: list[float] | None = None, output_mode: str = "regions",
                      modalities: list[str] | None = None, preprocessing: PreprocessConfig | None = None,
                      window: dict[str, Any] | None = None, name: str | None = None) -> ModelSource:
        """Any network: ``spec(**kwargs)`` with ``weights`` loaded strictly, default volrob preprocessing."""
        net, sha = load_module(spec, weights, **(kwargs or {}))
        mods = list(modalities or MODALITIES)
        win = SlidingWindowConfig.from_dict({"roi_size": list(roi_size), **(window or {})})
        predictor = Predictor(net, mean=mean or [0.0] * len(mods), std=std or [1.0] * len(mods), window=win,
                              output_mode=output_mode)
        origin = {"model": spec, "weights": weights, "kwargs": kwargs or {}, "mean": mean, "std": std}
        return cls(name or spec, predictor, preprocessing or PreprocessConfig(), mods, sha, origin)


def _fixed_input(model_name: str) -> bool:
    from volrob.models import model_info

    try:
        return model_info(model_name).fixed_input
    except ConfigError:
        return False


def load_entry(entry: ModelEntry, window: dict[str, Any]) -> ModelSource:
    """The model of one config entry (not an ensemble) with the run's ``window`` overrides."""
    if entry.checkpoint is not None:
        return ModelSource.from_checkpoint(entry.checkpoint, window, name=entry.name)
    if entry.model is None:
        raise ConfigError(f"models: {entry.name!r} is an ensemble, not a model")
    roi = tuple(entry.roi_size) if entry.roi_size is not None else DEFAULT_EXTERNAL_ROI
    return ModelSource.from_external(entry.model, weights=entry.weights, kwargs=entry.model_args, roi_size=roi,
                                     mean=entry.mean, std=entry.std, output_mode=entry.output_mode, window=window,
                                     name=entry.name)


class ModelPool:
    """Every non-ensemble model of ``cfg`` loaded once (eval mode, on ``device``) and the crafting predictors."""

    def __init__(self, cfg: RunConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.sources: dict[str, ModelSource] = {}
        for m in cfg.models:
            if not m.is_ensemble:
                src = load_entry(m, cfg.window)
                src.predictor.to(device).eval()
                self.sources[m.name] = src
        self._crafting: dict[tuple[str, str], torch.nn.Module] = {}

    def members(self, name: str) -> list[str]:
        """The models behind ``name``: its members for an ensemble, else itself."""
        return list(self.cfg.model(name).members or [name])

    def sha(self, name: str) -> str:
        """The weights' sha256 (``+``-joined over an ensemble's members)."""
        return "+".join(str(self.sources[n].sha256) for n in self.members(name))

    def preprocessing(self, name: str) -> PreprocessConfig:
        return self.sources[self.members(name)[0]].preprocessing

    def modalities(self, name: str) -> list[str]:
        return self.sources[self.members(name)[0]].modalities

    def check_shared_space(self, names: list[str], why: str) -> None:
        """ConfigError unless every model in ``names`` has the same preprocessing and modalities."""
        models = [n for name in names for n in self.members(name)]
        first = self.sources[models[0]]
        for n in models[1:]:
            src = self.sources[n]
            if src.preprocessing.to_dict() != first.preprocessing.to_dict():
                raise ConfigError(f"models: {n} preprocesses differently from {models[0]}; {why} needs one shared "
                                  "attack space")
            if src.modalities != first.modalities:
                raise ConfigError(f"models: {n} takes modalities {src.modalities}, {models[0]} takes "
                                  f"{first.modalities}")

    def crafting(self, name: str, window: dict[str, Any]) -> torch.nn.Module:
        """The predictor that crafts for ``name`` under per-attack ``window`` overrides (an ensemble for
        ensembles); built once per (model, window)."""
        key = (name, json.dumps(window, sort_keys=True))
        if key not in self._crafting:
            preds = [self.sources[n].predictor if not window else self.sources[n].with_window(window)
                     for n in self.members(name)]
            self._crafting[key] = preds[0] if not self.cfg.model(name).is_ensemble else EnsemblePredictor(preds).eval()
        return self._crafting[key]
