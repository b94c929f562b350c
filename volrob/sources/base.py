"""A model source: a ready predictor plus what is needed to feed it (preprocessing, modalities) and to name it in
results (weights' hash, origin). volrob checkpoints and ``package.module:factory`` networks are built here; other
kinds of model folders register a loader under a scheme (``nnunet:FOLDER``, ``bundle:FOLDER``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from volrob.checkpoint import load_checkpoint
from volrob.data.manifest import MODALITIES
from volrob.data.preprocess import PreprocessConfig
from volrob.errors import ConfigError
from volrob.external import load_module
from volrob.inference.predictor import Predictor, SlidingWindowConfig

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
        return base.with_window(win).eval()

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


class SourceLoader(Protocol):
    """Builds a :class:`ModelSource` from a folder (``location``), its ``options`` and the run's window overrides."""

    def __call__(self, location: str, *, options: Mapping[str, Any], window: Mapping[str, Any],
                 name: str | None) -> ModelSource: ...


_LOADERS: dict[str, SourceLoader] = {}
_OPTIONS: dict[str, tuple[str, ...]] = {}


def register_source(scheme: str, options: tuple[str, ...] = ()) -> Callable[[SourceLoader], SourceLoader]:
    """Register ``loader`` for models written ``scheme:LOCATION``; ``options`` are the keys it accepts."""

    def deco(loader: SourceLoader) -> SourceLoader:
        if scheme in _LOADERS:
            raise ConfigError(f"model source {scheme!r} is registered twice")
        _LOADERS[scheme], _OPTIONS[scheme] = loader, tuple(options)
        return loader

    return deco


def available_sources() -> list[str]:
    """The registered schemes (e.g. ``["bundle", "nnunet"]``)."""
    return sorted(_LOADERS)


def source_scheme(spec: str) -> tuple[str, str] | None:
    """``(scheme, location)`` when ``spec`` names a registered source (``nnunet:FOLDER``), else None (a
    ``package.module:factory`` network)."""
    scheme, sep, location = spec.partition(":")
    return (scheme, location) if sep and scheme in _LOADERS else None


def source_options(scheme: str) -> tuple[str, ...]:
    """The option keys the source ``scheme`` accepts."""
    return _OPTIONS[scheme]


def load_source(spec: str, *, options: Mapping[str, Any] | None = None, window: Mapping[str, Any] | None = None,
                name: str | None = None) -> ModelSource:
    """The model of ``scheme:LOCATION`` with its ``options`` (unknown keys are an error)."""
    found = source_scheme(spec)
    if found is None:
        raise ConfigError(f"model {spec!r}: not a registered model source {available_sources()}")
    scheme, location = found
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(_OPTIONS[scheme]))
    if unknown:
        raise ConfigError(f"options: {unknown} do not apply to {scheme} models (they take {list(_OPTIONS[scheme])})")
    if not location:
        raise ConfigError(f"model {spec!r}: give the folder after '{scheme}:'")
    return _LOADERS[scheme](location, options=opts, window=dict(window or {}), name=name)
