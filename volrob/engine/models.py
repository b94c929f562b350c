"""The models of a run: volrob checkpoints, external ``package.module:factory`` networks, registered model folders
(nnU-Net, MONAI bundles) and ensembles of them, each loaded once and kept on the run's device, with the predictors
that craft under per-attack window overrides."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch

from volrob.data.preprocess import PreprocessConfig
from volrob.errors import ConfigError
from volrob.inference.ensemble import EnsemblePredictor
from volrob.sources import DEFAULT_EXTERNAL_ROI, ModelSource, load_source, source_scheme

if TYPE_CHECKING:
    from volrob.engine.config import ModelEntry, RunConfig

def load_entry(entry: ModelEntry, window: dict[str, Any]) -> ModelSource:
    """The model of one config entry (not an ensemble) with the run's ``window`` overrides."""
    if entry.checkpoint is not None:
        return ModelSource.from_checkpoint(entry.checkpoint, window, name=entry.name)
    if entry.model is None:
        raise ConfigError(f"models: {entry.name!r} is an ensemble, not a model")
    if source_scheme(entry.model) is not None:
        win = {**window, **({"roi_size": list(entry.roi_size)} if entry.roi_size is not None else {})}
        return load_source(entry.model, options=entry.options, window=win, name=entry.name)
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
