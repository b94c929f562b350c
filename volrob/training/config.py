"""The training configuration (``configs/*.yaml``): sections model, data, preprocessing, augmentation, train,
inference and defence. ``volrob train CONFIG --set train.epochs=5`` overrides any key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volrob.data.labels import OUTPUT_MODES
from volrob.data.preprocess import PreprocessConfig
from volrob.errors import ConfigError
from volrob.inference.predictor import SlidingWindowConfig
from volrob.utils.config import apply_overrides, build_dataclass, read_yaml


@dataclass(frozen=True)
class ModelSection:
    name: str = "unet"
    preset: str = "tiny"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    manifest: str = ""
    train_split: str = "train"
    val_split: str = "val"
    output_mode: str = "regions"
    cache: bool = True
    num_workers: int = 0


@dataclass(frozen=True)
class AugmentSection:
    pos_fraction: float = 0.67  # share of crops centred on tumour voxels
    flip_prob: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    intensity_prob: float = 0.5


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 40
    batch_size: int = 2  # cases per step; each contributes crops_per_case crops
    crops_per_case: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup_epochs: int = 1
    val_every: int = 5
    grad_clip: float = 12.0
    loss: str | None = None  # default: the output mode's Dice + (B)CE
    amp: bool = True  # only on CUDA
    device: str = "auto"
    init_from: str | None = None  # fine-tune: start from this checkpoint's weights and normalisation


@dataclass(frozen=True)
class DefenceSection:
    """The training objective: a registered defence (``volrob models`` lists them) and its options."""

    name: str = "none"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from volrob import defences

        if not isinstance(self.options, dict):
            raise ConfigError(f"defence.options must be a mapping, got {self.options!r}")
        defences.create(self.name, **self.options)  # unknown names and bad options fail here, before any work


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    output_dir: str = "runs/train"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    preprocessing: PreprocessConfig = field(default_factory=PreprocessConfig)
    augmentation: AugmentSection = field(default_factory=AugmentSection)
    train: TrainSection = field(default_factory=TrainSection)
    inference: SlidingWindowConfig = field(default_factory=SlidingWindowConfig)
    defence: DefenceSection = field(default_factory=DefenceSection)

    def __post_init__(self) -> None:
        t, d, a = self.train, self.data, self.augmentation
        if d.output_mode not in OUTPUT_MODES:
            raise ConfigError(f"data.output_mode must be one of {list(OUTPUT_MODES)}, got {d.output_mode!r}")
        if not d.manifest:
            raise ConfigError("data.manifest is required (a manifest JSON file)")
        for name, val in (("train.epochs", t.epochs), ("train.batch_size", t.batch_size),
                          ("train.crops_per_case", t.crops_per_case), ("train.val_every", t.val_every)):
            if val < 1:
                raise ConfigError(f"{name} must be >= 1, got {val}")
        if t.lr <= 0 or t.weight_decay < 0 or t.warmup_epochs < 0 or t.grad_clip <= 0:
            raise ConfigError("train: need lr > 0, weight_decay >= 0, warmup_epochs >= 0, grad_clip > 0")
        for name, val in (("augmentation.pos_fraction", a.pos_fraction), ("augmentation.flip_prob", a.flip_prob),
                          ("augmentation.intensity_prob", a.intensity_prob)):
            if not 0 <= val <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {val}")
        if d.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {d.num_workers}")


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML training config, apply ``key=value`` overrides and validate everything."""
    data = apply_overrides(read_yaml(path), overrides)
    try:
        return build_dataclass(TrainConfig, data)
    except ConfigError as err:
        raise ConfigError(str(err), path=path) from None
