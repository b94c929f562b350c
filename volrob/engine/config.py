"""The one configuration of every experiment: data, models, attacks, scoring, outputs.

``evaluate``, ``attack``, ``robustness``, ``transfer``, ``query`` and ``universal`` all build a :class:`RunConfig`
(from flags or from a YAML file) and hand it to the kernel (:func:`volrob.engine.kernel.run_experiment`). YAML
layout (every key but ``manifest`` and ``models`` is optional)::

    manifest: runs/demo/data/manifest.json
    split: test
    cases: [BraTS2021_00005]          # or max_cases: 2 (first cases of the split, manifest order)
    models:
      - {name: unet, checkpoint: runs/demo/unet/best.pt}
      - {name: ext, model: monai.networks.nets:UNet, model_args: {...}, weights: w.pt, roi_size: [96, 96, 96]}
      - {name: ens, members: [unet, ext]}             # an ensemble surrogate (crafts only)
    attacks:
      - {attack: pgd, options: {steps: 10}, eps: [4, 8]}
      - {attack: vafa3d, options: {steps: 20}, sweep: {q_max: [10, 20]}, window: {gradient: tiles}}
    transfer: false       # false: every source is scored on itself (white-box grid); true: on every target
    sources: [unet]       # who crafts (default: every model); targets: [unet, ext] who is scored
    seed: 0
    window: {}            # sliding-window overrides of every model (crafting and scoring)
    region: WT            # the region of summaries, matrices and sanity flags
    metrics: [dice, hd95_brats, nsd]  # default: by the data's label convention (docs/scoring.md)
    lesionwise: gli       # challenge of the lesion-wise metrics and of hd95_brats' miss penalty

A per-attack ``window`` changes how that attack crafts (e.g. the published tile protocol), never how anything is
scored. Relative paths are resolved against the current directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volrob.analysis.bands import check_edges
from volrob.data.labels import REGIONS
from volrob.engine.attack_spec import LABEL, AttackSpec, check_attack
from volrob.engine.roi_crop import CROP_CENTRES
from volrob.errors import ConfigError
from volrob.evaluation.challenges import get_challenge
from volrob.evaluation.empty_policy import get_policy
from volrob.evaluation.metric_set import check_metrics
from volrob.evaluation.sanity import SanityThresholds
from volrob.inference.predictor import SlidingWindowConfig
from volrob.sources import available_sources, source_scheme
from volrob.utils.config import build_dataclass, load_config


@dataclass
class ModelEntry:
    """One model: a volrob ``checkpoint``, an external ``model`` factory (``package.module:factory`` with
    ``model_args`` and strictly loaded ``weights``), a model folder of a registered kind (``model: nnunet:FOLDER`` or
    ``bundle:FOLDER``, with that kind's ``options``), or an ensemble of other models (``members``, crafting only).
    ``defended`` exempts it from the collapse check and names it in defence comparisons."""

    name: str
    checkpoint: str | None = None
    model: str | None = None
    weights: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    roi_size: list[int] | None = None
    output_mode: str = "regions"
    mean: list[float] | None = None
    std: list[float] | None = None
    members: list[str] | None = None
    defended: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_ensemble(self) -> bool:
        return self.members is not None

    @property
    def kind(self) -> str:
        if self.model is not None and source_scheme(self.model) is not None:
            return source_scheme(self.model)[0]  # type: ignore[index]
        return "checkpoint" if self.checkpoint else "external" if self.model else "ensemble"


@dataclass
class BandsConfig:
    """DCT bands of the perturbation analysis: radius edges from 0 to 1 (see :mod:`volrob.analysis.bands`)."""

    edges: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 1.0])

    def __post_init__(self) -> None:
        try:
            self.edges = check_edges(self.edges)
        except ConfigError as err:
            raise ConfigError(f"bands.edges: {err}") from None
        if len(self.edges) < 3:
            raise ConfigError(f"bands.edges: need at least two bands, got {self.edges}")


@dataclass
class OutputsConfig:
    """What is written beside the tables: adversarial volumes (float32 NIfTI, source affine), predicted label maps
    of the clean inputs, the perturbations themselves (needed to score targets added later), and each attack cell's
    worst-case views (:mod:`volrob.engine.views`; on by default)."""

    volumes: bool = False
    predictions: bool = False
    perturbations: bool = False
    views: bool = True


@dataclass
class UniversalConfig:
    """Learning one universal perturbation on the source's ``train_split`` (see :mod:`volrob.attacks.universal`)."""

    source: str = ""
    train_split: str = "train"
    eps: float = 8.0
    epochs: int = 5
    crops_per_case: int = 2
    step: float = 1.0

    def __post_init__(self) -> None:
        if not self.eps >= 0:
            raise ConfigError(f"universal.eps must be >= 0 (1/255 units), got {self.eps}")
        for name in ("epochs", "crops_per_case"):
            if getattr(self, name) < 1:
                raise ConfigError(f"universal.{name} must be >= 1, got {getattr(self, name)}")
        if not self.step > 0:
            raise ConfigError(f"universal.step must be > 0, got {self.step}")


@dataclass
class RunConfig:
    """The whole experiment; see the module docstring."""

    manifest: str = ""
    models: list[ModelEntry] = field(default_factory=list)
    attacks: list[AttackSpec] = field(default_factory=list)
    transfer: bool = False
    sources: list[str] | None = None
    targets: list[str] | None = None
    split: str = "test"
    cases: list[str] | None = None
    max_cases: int | None = None
    seed: int = 0
    device: str = "auto"
    window: dict[str, Any] = field(default_factory=dict)
    roi_crop: str | None = None
    empty_policy: str = "brats"
    nsd_tolerance_mm: float = 1.0
    metrics: list[str] | None = None
    lesionwise: str | None = None
    region: str = "WT"
    success_drop: float = 0.5
    sanity: SanityThresholds = field(default_factory=SanityThresholds)
    bands: BandsConfig | None = None
    reference: str | None = None
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    universal: UniversalConfig | None = None

    def model(self, name: str) -> ModelEntry:
        return next(m for m in self.models if m.name == name)

    @property
    def source_names(self) -> list[str]:
        """Who crafts: ``sources``, else every model (ensembles included)."""
        return list(self.sources) if self.sources is not None else [m.name for m in self.models]

    @property
    def target_names(self) -> list[str]:
        """Who is scored: ``targets``, else every model that is not an ensemble."""
        if self.targets is not None:
            return list(self.targets)
        return [m.name for m in self.models if not m.is_ensemble]


def _models(raw: Any) -> list[ModelEntry]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("models: expected a non-empty list")
    out: list[ModelEntry] = []
    for i, item in enumerate(raw):
        where = f"models[{i}]"
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where}: expected a mapping with a name")
        m = build_dataclass(ModelEntry, item, where)
        if not LABEL.match(m.name) or "__" in m.name:
            raise ConfigError(f"{where}.name: {m.name!r} must be letters, digits, '_', '.', '-' without '__'")
        if any(o.name == m.name for o in out):
            raise ConfigError(f"{where}.name: {m.name!r} is used twice")
        given = [k for k in ("checkpoint", "model", "members") if getattr(m, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"{where}: give exactly one of checkpoint, model or members (got {given or 'none'})")
        if m.model is None:
            extra = [k for k in ("weights", "roi_size", "mean", "std") if getattr(m, k) is not None]
            if m.model_args or extra or m.output_mode != "regions":
                raise ConfigError(f"{where}: weights, model_args, roi_size, mean, std and output_mode go with an "
                                  "external model (model: package.module:factory)")
        _check_source(m, where)
        for key in ("checkpoint", "weights"):
            value = getattr(m, key)
            if value is not None:
                setattr(m, key, str(Path(value).resolve()))
                if not Path(getattr(m, key)).is_file():
                    raise ConfigError(f"{where}.{key}: file does not exist: {getattr(m, key)}")
        if m.roi_size is not None and (len(m.roi_size) != 3 or min(m.roi_size) < 1):
            raise ConfigError(f"{where}.roi_size: expected three positive integers, got {m.roi_size}")
        out.append(m)
    names = {m.name: m for m in out}
    for i, m in enumerate(out):
        if m.members is not None:
            bad = [n for n in m.members if n not in names or names[n].is_ensemble]
            if not m.members or bad or len(set(m.members)) != len(m.members):
                raise ConfigError(f"models[{i}].members: expected distinct names of non-ensemble models, "
                                  f"got {m.members}")
    return out


def _check_source(m: ModelEntry, where: str) -> None:
    """A model folder of a registered kind: an existing folder (made absolute) and no factory-only keys;
    ``options`` only go with such a model."""
    found = source_scheme(m.model) if m.model is not None else None
    if found is None:
        if m.options:
            raise ConfigError(f"{where}.options: only models of a registered kind ({available_sources()}) take "
                              "options")
        return
    scheme, location = found
    extra = [k for k in ("weights", "mean", "std") if getattr(m, k) is not None]
    if m.model_args or extra or m.output_mode != "regions":
        raise ConfigError(f"{where}: a {scheme} model brings its own weights, normalisation and outputs; "
                          "weights, model_args, mean, std and output_mode do not apply")
    if not isinstance(m.options, dict):
        raise ConfigError(f"{where}.options: expected a mapping, got {m.options!r}")
    folder = Path(location).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"{where}.model: {scheme} folder does not exist: {folder}")
    m.model = f"{scheme}:{folder}"


def parse_attacks(raw: Any) -> list[AttackSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("attacks: expected a list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "attack" not in item:
            raise ConfigError(f"attacks[{i}]: expected a mapping with an attack name")
        spec = build_dataclass(AttackSpec, item, f"attacks[{i}]")
        check_attack(spec, f"attacks[{i}]")
        out.append(spec)
    return out


def _check_names(cfg: RunConfig) -> None:
    names = [m.name for m in cfg.models]
    for key in ("sources", "targets"):
        chosen = getattr(cfg, key)
        if chosen is None:
            continue
        bad = [n for n in chosen if n not in names]
        if not chosen or bad or len(set(chosen)) != len(chosen):
            raise ConfigError(f"{key}: expected distinct model names from models {names}, got {chosen}")
    if any(cfg.model(n).is_ensemble for n in cfg.target_names):
        raise ConfigError("targets: an ensemble can craft (be a source) but is never scored")
    if not cfg.transfer and any(cfg.model(n).is_ensemble for n in cfg.source_names):
        raise ConfigError("sources: an ensemble is a transfer surrogate; set transfer: true to score its "
                          "perturbations on the targets")
    if not cfg.transfer and cfg.targets is not None:
        raise ConfigError("targets: a white-box run scores every source on itself; set transfer: true to score "
                          "the sources' perturbations on other targets")
    if not cfg.attacks and cfg.sources is not None:
        raise ConfigError("sources: there are no attacks to craft")
    if cfg.reference is not None and cfg.reference not in names:
        raise ConfigError(f"reference: {cfg.reference!r} is not one of the models {names}")


def _check_scalars(cfg: RunConfig) -> None:
    get_policy(cfg.empty_policy)
    if cfg.region not in REGIONS:
        raise ConfigError(f"region must be one of {list(REGIONS)}, got {cfg.region!r}")
    if not 0.0 < cfg.success_drop <= 1.0:
        raise ConfigError(f"success_drop must be in (0, 1], got {cfg.success_drop}")
    if not cfg.nsd_tolerance_mm > 0:
        raise ConfigError(f"nsd_tolerance_mm must be > 0, got {cfg.nsd_tolerance_mm}")
    if cfg.metrics is not None:
        cfg.metrics = list(check_metrics(cfg.metrics))
    if cfg.lesionwise is not None:
        get_challenge(cfg.lesionwise)
    if cfg.max_cases is not None and cfg.max_cases < 1:
        raise ConfigError(f"max_cases must be a positive integer, got {cfg.max_cases}")
    if cfg.cases is not None and (not cfg.cases or len(set(cfg.cases)) != len(cfg.cases)):
        raise ConfigError(f"cases: expected a non-empty list of distinct case ids, got {cfg.cases}")
    if cfg.roi_crop is not None:
        if cfg.roi_crop not in CROP_CENTRES:
            raise ConfigError(f"roi_crop must be one of {list(CROP_CENTRES)}, got {cfg.roi_crop!r}")
        if cfg.transfer:
            raise ConfigError("roi_crop: the ROI-crop protocol is white-box only (transfer: false)")
    try:
        SlidingWindowConfig.from_dict({**SlidingWindowConfig().to_dict(), **cfg.window})
    except ConfigError as err:
        raise ConfigError(f"window: {err}") from None


def parse_run_config(data: dict[str, Any]) -> RunConfig:
    """A validated :class:`RunConfig` from a mapping (paths resolved against the working directory)."""
    if not isinstance(data, dict):
        raise ConfigError("config: top level must be a mapping")
    for key in ("manifest", "models"):
        if key not in data:
            raise ConfigError(f"config: missing key {key!r}")
    rest = {k: v for k, v in data.items() if k not in ("models", "attacks")}
    cfg = build_dataclass(RunConfig, rest)
    cfg.models = _models(data["models"])
    cfg.attacks = parse_attacks(data.get("attacks"))
    cfg.manifest = str(Path(cfg.manifest).resolve())
    if not Path(cfg.manifest).is_file():
        raise ConfigError(f"manifest: file does not exist: {cfg.manifest}")
    _check_names(cfg)
    _check_scalars(cfg)
    if cfg.universal is not None:
        if cfg.universal.source not in [m.name for m in cfg.models] or cfg.model(cfg.universal.source).is_ensemble:
            raise ConfigError(f"universal.source: {cfg.universal.source!r} is not a (non-ensemble) model")
        if cfg.attacks:
            raise ConfigError("universal: the universal experiment makes its own two cells; leave attacks empty")
    from volrob.engine.cells import expand

    expand(cfg)  # cell ids must be unique
    return cfg


def load_run_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read, override (``--set key.sub=value``) and validate a config file; errors name the file or override."""
    return load_config(RunConfig, path, overrides, parse_run_config)
