"""Transfer-matrix configuration: models (checkpoints or ensembles of them), sources, targets, attacks, budgets.

YAML layout (see ``configs/transfer/demo.yaml``)::

    manifest: runs/demo/data/manifest.json
    split: test
    models:
      - {name: unet, checkpoint: runs/demo/unet/best.pt}
      - {name: unetr, checkpoint: runs/demo/unetr/best.pt}
      - {name: ens-no-unet, members: [unetr, umamba]}      # an ensemble surrogate (source only)
    sources: [unet, unetr, ens-no-unet]                     # default: every model
    targets: [unet, unetr]                                  # default: every checkpoint model
    attacks:
      - {attack: pgd, options: {steps: 10}, eps: [4, 8]}
    bands: {edges: [0.0, 0.1, 0.3, 1.0]}                    # optional: DCT band analysis of every perturbation

All models must share the preprocessing (the attack space is the same for every model) and the modalities.
Relative paths are resolved against the current directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volrob.analysis.bands import check_edges
from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import get_policy
from volrob.robustness.attack_spec import LABEL, AttackSpec, budgets, cell_id, check_attack
from volrob.utils.config import apply_overrides, build_dataclass, read_yaml


@dataclass
class TransferModel:
    """A checkpoint (``checkpoint``) or an ensemble surrogate of other models (``members``), named ``name``."""

    name: str
    checkpoint: str | None = None
    members: list[str] | None = None

    @property
    def is_ensemble(self) -> bool:
        return self.members is not None


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
class TransferConfig:
    """The whole transfer experiment; see the module docstring."""

    manifest: str = ""
    models: list[TransferModel] = field(default_factory=list)
    attacks: list[AttackSpec] = field(default_factory=list)
    sources: list[str] | None = None
    targets: list[str] | None = None
    seed: int = 0
    split: str = "test"
    device: str = "auto"
    window: dict[str, Any] = field(default_factory=dict)
    empty_policy: str = "brats"
    nsd_tolerance_mm: float = 1.0
    region: str = "WT"
    success_drop: float = 0.5
    """A case counts as a successful attack when its Dice falls by at least this share of its clean Dice."""
    tolerance: float = 0.02
    """Black-box drop may exceed the white-box drop by this much before the sanity flag is raised."""
    bands: BandsConfig | None = None
    max_cases: int | None = None
    """Use only the first ``max_cases`` cases of the split (in manifest order), e.g. for a quick demo."""

    def model(self, name: str) -> TransferModel:
        return next(m for m in self.models if m.name == name)

    @property
    def source_names(self) -> list[str]:
        return list(self.sources) if self.sources is not None else [m.name for m in self.models]

    @property
    def target_names(self) -> list[str]:
        return list(self.targets) if self.targets is not None else [m.name for m in self.models
                                                                    if not m.is_ensemble]


def _models(raw: Any) -> list[TransferModel]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("models: expected a non-empty list")
    out: list[TransferModel] = []
    for i, item in enumerate(raw):
        where = f"models[{i}]"
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where}: expected a mapping with a name")
        m = build_dataclass(TransferModel, item, where)
        if not LABEL.match(m.name) or "__" in m.name:
            raise ConfigError(f"{where}.name: {m.name!r} must be letters, digits, '_', '.', '-' without '__'")
        if any(o.name == m.name for o in out):
            raise ConfigError(f"{where}.name: {m.name!r} is used twice")
        if (m.checkpoint is None) == (m.members is None):
            raise ConfigError(f"{where}: give either checkpoint or members")
        if m.checkpoint is not None:
            m.checkpoint = str(Path(m.checkpoint).resolve())
            if not Path(m.checkpoint).is_file():
                raise ConfigError(f"{where}.checkpoint: file does not exist: {m.checkpoint}")
        out.append(m)
    names = {m.name: m for m in out}
    for i, m in enumerate(out):
        if m.members is None:
            continue
        bad = [n for n in m.members if n not in names or names[n].is_ensemble]
        if len(m.members) < 1 or bad or len(set(m.members)) != len(m.members):
            raise ConfigError(f"models[{i}].members: expected distinct checkpoint model names, got {m.members}")
    return out


def parse_transfer_config(data: dict[str, Any]) -> TransferConfig:
    """A validated :class:`TransferConfig` from a mapping (paths resolved against the working directory)."""
    if not isinstance(data, dict):
        raise ConfigError("transfer config: top level must be a mapping")
    for key in ("manifest", "models", "attacks"):
        if key not in data:
            raise ConfigError(f"transfer config: missing key {key!r}")
    rest = {k: v for k, v in data.items() if k not in ("models", "attacks", "bands")}
    cfg = build_dataclass(TransferConfig, rest)
    cfg.models = _models(data["models"])
    raw_attacks = data["attacks"]
    if not isinstance(raw_attacks, list) or not raw_attacks:
        raise ConfigError("attacks: expected a non-empty list")
    cfg.attacks = []
    for i, item in enumerate(raw_attacks):
        if not isinstance(item, dict) or "attack" not in item:
            raise ConfigError(f"attacks[{i}]: expected a mapping with an attack name")
        spec = build_dataclass(AttackSpec, item, f"attacks[{i}]")
        check_attack(spec, f"attacks[{i}]")
        cfg.attacks.append(spec)
    if data.get("bands") is not None:
        cfg.bands = build_dataclass(BandsConfig, data["bands"], "bands")
    cfg.manifest = str(Path(cfg.manifest).resolve())
    if not Path(cfg.manifest).is_file():
        raise ConfigError(f"manifest: file does not exist: {cfg.manifest}")
    get_policy(cfg.empty_policy)
    names = {m.name for m in cfg.models}
    for key in ("sources", "targets"):
        chosen = getattr(cfg, key)
        if chosen is None:
            continue
        bad = [n for n in chosen if n not in names]
        if not chosen or bad or len(set(chosen)) != len(chosen):
            raise ConfigError(f"{key}: expected distinct model names from models, got {chosen}")
    if any(cfg.model(n).is_ensemble for n in cfg.target_names):
        raise ConfigError("targets: an ensemble can be a source only")
    if cfg.region not in ("TC", "WT", "ET"):
        raise ConfigError(f"region must be TC, WT or ET, got {cfg.region!r}")
    if not 0.0 < cfg.success_drop <= 1.0:
        raise ConfigError(f"success_drop must be in (0, 1], got {cfg.success_drop}")
    if not cfg.tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0, got {cfg.tolerance}")
    if cfg.max_cases is not None and cfg.max_cases < 1:
        raise ConfigError(f"max_cases must be a positive integer, got {cfg.max_cases}")
    transfer_cells(cfg)  # ids must be unique
    return cfg


@dataclass(frozen=True)
class TransferCell:
    """One (source, attack, budget): ``id`` names its folder; ``window`` are its crafting window overrides."""

    id: str
    source: str
    attack: str
    options: dict[str, Any]
    budget_key: str | None
    budget: Any
    window: dict[str, Any] = field(default_factory=dict)


def transfer_cells(cfg: TransferConfig) -> list[TransferCell]:
    """Every source × attack × budget, in config order."""
    out = []
    for source in cfg.source_names:
        for a in cfg.attacks:
            for key, value in budgets(a):
                opts = {**a.options, **({key: value} if key else {})}
                out.append(TransferCell(cell_id(source, a.attack, opts, key, value, a.window), source, a.attack,
                                        opts, key, value, {**cfg.window, **a.window}))
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise ConfigError("attacks: the same attack and options appear twice")
    return out


def load_transfer_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TransferConfig:
    """Read, override (``key.sub=value``) and validate a transfer config; errors name the file."""
    data = apply_overrides(read_yaml(path), overrides)
    try:
        return parse_transfer_config(data)
    except ConfigError as err:
        raise ConfigError(str(err), path=path) from None
