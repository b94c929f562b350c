"""A whole study in one YAML file (``volrob run STUDY.yaml -o OUTDIR``; see ``configs/studies/``)::

    name: quickstart
    seed: 0
    device: auto
    data:
      synth: {cases: 16, shape: [96, 96, 96], val_fraction: 0.125, test_fraction: 0.25}   # or manifest: FILE
    models:                                  # trained here from a training config, or given (checkpoint/folder)
      - {name: unet, config: configs/unet.yaml, set: {train.epochs: 20}}
      - {name: theirs, checkpoint: path/to/best.pt}
      - {name: nnunet, model: "nnunet:path/to/Dataset137_BraTS2021/nnUNetTrainer__nnUNetPlans__3d_fullres",
         options: {folds: [0, 1, 2, 3, 4]}}
    evaluate: {split: test}                  # clean scores of every model (always run)
    grid:                                    # white-box: any run-config keys but manifest and models
      split: test
      max_cases: 3
      attacks: [{attack: pgd, options: {steps: 5}, eps: [4, 8]}]
    transfer: {max_cases: 2, attacks: [...]} # every model crafts, every model is scored
    defend:                                  # robust fine-tunes of trained models
      - {name: unet_pgdat, source: unet, defence: {name: pgd_at, options: {eps: 4, steps: 3}}, set: {...}}
    compare: {attacks: [...]}                # the defended models against their sources, white-box

Every section but ``data`` and ``models`` may be left out; stages without a section do not run. Relative paths
are resolved against the current directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volrob import defences
from volrob.engine.attack_spec import LABEL
from volrob.engine.config import RunConfig, parse_attacks
from volrob.errors import ConfigError
from volrob.sources import available_sources, source_options, source_scheme
from volrob.utils.config import build_dataclass, load_config

STAGE_KEYS_FORBIDDEN = ("manifest", "models", "transfer", "universal")
"""Run-config keys a study stage section may not set: the study provides them."""


@dataclass
class SynthSection:
    """Synthetic BraTS-like cases (``volrob synth``); ``seed`` defaults to the study's."""

    cases: int = 16
    shape: list[int] = field(default_factory=lambda: [96, 96, 96])
    val_fraction: float = 0.125
    test_fraction: float = 0.25
    seed: int | None = None


@dataclass
class DataSection:
    """Exactly one of ``synth`` and ``manifest``."""

    synth: SynthSection | None = None
    manifest: str | None = None

    def __post_init__(self) -> None:
        if (self.synth is None) == (self.manifest is None):
            raise ConfigError("data: give exactly one of synth and manifest")


@dataclass
class ModelSection:
    """A model of the study: trained from ``config`` (a training YAML, with ``set`` overrides), a given volrob
    ``checkpoint``, or a given model folder (``model: nnunet:FOLDER`` or ``bundle:FOLDER`` with its ``options``)."""

    name: str
    config: str | None = None
    checkpoint: str | None = None
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)

    def entry(self, checkpoint: Path | None, defended: bool = False) -> dict[str, Any]:
        """This model's ``models`` entry of a run config (``checkpoint``: where training left it)."""
        if self.model is not None:
            return {"name": self.name, "model": self.model, "options": dict(self.options), "defended": defended}
        return {"name": self.name, "checkpoint": str(checkpoint), "defended": defended}


@dataclass
class DefendSection:
    """A robust fine-tune of the trained model ``source`` with ``defence`` (``{name, options}``), its training
    config overridden by ``set``."""

    name: str
    source: str
    defence: dict[str, Any] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyConfig:
    """The whole study; see the module docstring."""

    name: str = "study"
    seed: int = 0
    device: str = "auto"
    data: DataSection = field(default_factory=lambda: DataSection(synth=SynthSection()))
    models: list[ModelSection] = field(default_factory=list)
    evaluate: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, Any] | None = None
    transfer: dict[str, Any] | None = None
    defend: list[DefendSection] = field(default_factory=list)
    compare: dict[str, Any] | None = None

    def model(self, name: str) -> ModelSection:
        return next(m for m in self.models if m.name == name)


def _check_stage(section: dict[str, Any] | None, where: str, *, attacks: bool) -> None:
    """The keys of an engine stage: any run-config key but those the study provides, attacks valid."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping of run-config keys")
    bad = [k for k in STAGE_KEYS_FORBIDDEN if k in section]
    if bad:
        raise ConfigError(f"{where}: {bad} are set by the study, not in a stage")
    if attacks and not section.get("attacks"):
        raise ConfigError(f"{where}.attacks: expected a non-empty list")
    build_dataclass(RunConfig, {k: v for k, v in section.items() if k != "attacks"}, where)
    try:
        parse_attacks(section.get("attacks"))
    except ConfigError as err:
        raise ConfigError(f"{where}.{err}") from None


def _check_folder_model(m: ModelSection, where: str) -> None:
    """A given model folder of a registered kind (``nnunet:FOLDER``, ``bundle:FOLDER``), made absolute."""
    found = source_scheme(m.model) if m.model is not None else None
    if found is None:
        raise ConfigError(f"{where}.model: expected a model folder of a registered kind "
                          f"({', '.join(f'{s}:FOLDER' for s in available_sources())}), got {m.model!r}"
                          if m.model is not None else f"{where}.options: go with a model folder (model: ...)")
    if m.set:
        raise ConfigError(f"{where}.set: training overrides need a config to train from")
    scheme, location = found
    folder = Path(location).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"{where}.model: {scheme} folder does not exist: {folder}")
    m.model = f"{scheme}:{folder}"
    if not isinstance(m.options, dict) or set(m.options) - set(source_options(scheme)):
        raise ConfigError(f"{where}.options: {scheme} models take {list(source_options(scheme))}, got {m.options!r}")


def _check(cfg: StudyConfig) -> StudyConfig:
    if not cfg.models:
        raise ConfigError("models: expected a non-empty list")
    names: list[str] = []
    for i, m in enumerate(cfg.models):
        if not LABEL.match(m.name) or "__" in m.name or m.name in names:
            raise ConfigError(f"models[{i}].name: {m.name!r} must be unique letters, digits, '_', '.', '-'")
        names.append(m.name)
        given = [k for k in ("config", "checkpoint", "model") if getattr(m, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"models[{i}]: give exactly one of config (train it), checkpoint or model (use it)")
        if m.model is not None or m.options:
            _check_folder_model(m, f"models[{i}]")
            continue
        path = m.config or m.checkpoint
        assert path is not None
        resolved = str(Path(path).resolve())
        if not Path(resolved).is_file():
            raise ConfigError(f"models[{i}].{'config' if m.config else 'checkpoint'}: file does not exist: {path}")
        if m.config:
            m.config = resolved
        else:
            m.checkpoint = resolved
        if m.checkpoint and m.set:
            raise ConfigError(f"models[{i}].set: training overrides need a config to train from")
    for i, d in enumerate(cfg.defend):
        if not LABEL.match(d.name) or "__" in d.name or d.name in names:
            raise ConfigError(f"defend[{i}].name: {d.name!r} must be a new unique label")
        names.append(d.name)
        if d.source not in [m.name for m in cfg.models] or cfg.model(d.source).config is None:
            raise ConfigError(f"defend[{i}].source: {d.source!r} is not a model trained by this study")
        if not isinstance(d.defence.get("name"), str) or set(d.defence) - {"name", "options"}:
            raise ConfigError(f"defend[{i}].defence: expected {{name: ..., options: {{...}}}}")
        try:
            defences.create(d.defence["name"], **(d.defence.get("options") or {}))
        except ConfigError as err:
            raise ConfigError(f"defend[{i}].defence: {err}") from None
    if cfg.data.manifest is not None:
        cfg.data.manifest = str(Path(cfg.data.manifest).resolve())
        if not Path(cfg.data.manifest).is_file():
            raise ConfigError(f"data.manifest: file does not exist: {cfg.data.manifest}")
    _check_stage(cfg.evaluate, "evaluate", attacks=False)
    if cfg.evaluate.get("attacks"):
        raise ConfigError("evaluate.attacks: the evaluation stage scores clean inputs only")
    _check_stage(cfg.grid, "grid", attacks=True)
    _check_stage(cfg.transfer, "transfer", attacks=True)
    _check_stage(cfg.compare, "compare", attacks=True)
    if cfg.compare is not None and not cfg.defend:
        raise ConfigError("compare: needs defended models (a defend section)")
    return cfg


def parse_study(data: dict[str, Any]) -> StudyConfig:
    """A validated :class:`StudyConfig` from a mapping."""
    if not isinstance(data, dict):
        raise ConfigError("study: top level must be a mapping")
    return _check(build_dataclass(StudyConfig, data))


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> StudyConfig:
    """Read, override and validate a study file; errors name the file or the override."""
    return load_config(StudyConfig, path, overrides, parse_study)
