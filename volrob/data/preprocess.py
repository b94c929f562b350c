"""Deterministic preprocessing with MONAI transforms; its configuration travels inside every checkpoint.

Two halves, on purpose:

* **data side** (here): orientation, resampling to a fixed spacing, crop to the brain's bounding box, and a
  per-channel scaling of intensities to ``[0, 1]``. This ``[0, 1]`` space is volrob's *attack space*: ε budgets
  are measured in it. Two scalings: ``percentile`` (volrob's own models: robust percentiles of the non-zero voxels
  map to 0 and 1, clipped) and ``linear`` (models that z-score their input themselves, e.g. nnU-Net and MONAI
  bundles: divide by the channel's brain maximum, after a shift when the channel has negative values; no clipping,
  so the z-scored values the network sees are exactly those of the original intensities).
* **model side** (``volrob.inference.predictor``): the network's own normalisation (fixed ``(x - mean) / std``
  for volrob's checkpoints, a per-case z-score for nnU-Net and bundles). It is applied inside the predictor so
  attacks and evaluation see the same function.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, CropForegroundd, MapTransform, Orientationd, Spacingd

from volrob.errors import ConfigError
from volrob.utils.config import build_dataclass

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # nibabel's world axes
SCALINGS = ("percentile", "linear")


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything needed to redo the data-side preprocessing exactly.

    ``orientation`` null keeps the file's voxel order (models trained on arrays as stored, e.g. nnU-Net);
    ``scaling`` is ``percentile`` (between ``lower_percentile`` and ``upper_percentile``, clipped) or ``linear``
    (see the module docstring; the percentiles are then unused).
    """

    orientation: str | None = "RAS"
    spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    crop_foreground: bool = True
    crop_margin: int = 2
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    scaling: str = "percentile"

    def __post_init__(self) -> None:
        if self.orientation is not None and (
                not isinstance(self.orientation, str) or len(self.orientation) != 3
                or set(self.orientation.upper()) - set("LRAPSI")):
            raise ConfigError(f"preprocessing.orientation must be 3 axis codes like 'RAS' or null, got "
                              f"{self.orientation!r}")
        if self.scaling not in SCALINGS:
            raise ConfigError(f"preprocessing.scaling must be one of {list(SCALINGS)}, got {self.scaling!r}")
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise ConfigError(f"preprocessing.spacing must be three positive numbers or null, got {self.spacing}")
        if not 0 <= self.lower_percentile < self.upper_percentile <= 100:
            raise ConfigError("preprocessing: need 0 <= lower_percentile < upper_percentile <= 100")
        if self.crop_margin < 0:
            raise ConfigError(f"preprocessing.crop_margin must be >= 0, got {self.crop_margin}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["spacing"] = None if self.spacing is None else [float(s) for s in self.spacing]
        if self.scaling == "percentile":
            del out["scaling"]  # the default: records (and the hashes of checkpoints and runs) stay as they were
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        return build_dataclass(cls, data, "preprocessing")


class ScaleToUnitd(MapTransform):
    """Per-channel robust scaling to ``[0, 1]``: percentiles of the non-zero voxels map to 0 and 1, then clip.

    Voxels that are zero in every channel (outside the brain) stay exactly 0.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, lower: float = 0.5, upper: float = 99.5,
                 scaling: str = "percentile") -> None:
        super().__init__(keys)
        self.lower, self.upper, self.scaling = lower, upper, scaling

    def _bounds(self, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The intensities that map to 0 and 1 for one channel's brain voxels ``vals``."""
        if self.scaling == "linear":
            return torch.clamp(vals.min(), max=0.0), vals.max()
        return tuple(torch.quantile(vals[:: max(1, vals.numel() // 2_000_000)],  # type: ignore[return-value]
                                    torch.tensor([self.lower, self.upper], dtype=torch.float32) / 100))

    def scale(self, img: torch.Tensor) -> torch.Tensor:
        brain = (img != 0).any(0)
        out = torch.zeros_like(img, dtype=torch.float32)
        if not brain.any():
            return out
        for c in range(img.shape[0]):
            vals = img[c][brain].float()
            lo, hi = self._bounds(vals)
            scaled = ((img[c].float() - lo) / torch.clamp(hi - lo, min=1e-8)).clamp(0, 1)
            out[c] = torch.where(brain, scaled, torch.zeros_like(scaled))
        return out

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            scaled = self.scale(torch.as_tensor(img))
            d[key] = MetaTensor(scaled, meta=img.meta, applied_operations=img.applied_operations) \
                if isinstance(img, MetaTensor) else scaled
        return d


@dataclass
class Preprocessed:
    """One case after data-side preprocessing (tensors keep their MONAI meta data for inversion)."""

    image: MetaTensor  # (C, D, H, W) float32 in [0, 1]
    label: MetaTensor | None  # (1, D, H, W) canonical classes, uint8
    spatial: Compose = field(repr=False)  # the invertible spatial part, to map predictions back to source space


def spatial_transforms(cfg: PreprocessConfig, keys: Sequence[str]) -> Compose:
    """Orientation, spacing and foreground crop for ``keys`` ("image" first; others are label-like)."""
    modes = ["bilinear" if k == "image" else "nearest" for k in keys]
    steps: list[Any] = []
    if cfg.orientation is not None:
        steps.append(Orientationd(keys=keys, axcodes=cfg.orientation, labels=_RAS_LABELS))
    if cfg.spacing is not None:
        steps.append(Spacingd(keys=keys, pixdim=cfg.spacing, mode=modes))
    if cfg.crop_foreground:
        steps.append(CropForegroundd(keys=keys, source_key="image", margin=cfg.crop_margin,
                                     select_fn=lambda x: x > 0, allow_smaller=True))
    return Compose(steps)


def preprocess(image: np.ndarray, label: np.ndarray | None, affine: np.ndarray, cfg: PreprocessConfig) -> Preprocessed:
    """Preprocess one case: ``image`` (C, i, j, k) in source voxel order, ``label`` canonical (i, j, k) or None."""
    meta = {"affine": torch.as_tensor(affine, dtype=torch.float64)}
    data: dict[str, Any] = {"image": MetaTensor(torch.as_tensor(image, dtype=torch.float32), meta=dict(meta))}
    keys = ["image"]
    if label is not None:
        data["label"] = MetaTensor(torch.as_tensor(label[None], dtype=torch.float32), meta=dict(meta))
        keys.append("label")
    spatial = spatial_transforms(cfg, keys)
    out = spatial(data)
    out = ScaleToUnitd("image", cfg.lower_percentile, cfg.upper_percentile, cfg.scaling)(out)
    lab = out.get("label")
    if lab is not None:
        lab = MetaTensor(lab.round().to(torch.uint8), meta=lab.meta, applied_operations=lab.applied_operations)
    return Preprocessed(out["image"], lab, spatial)


def channel_stats(images: Sequence[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over the brain (non-zero) voxels of several ``(C, ...)`` images in [0, 1]."""
    if not images:
        raise ConfigError("cannot compute normalisation statistics from zero training images")
    n_ch = images[0].shape[0]
    s = torch.zeros(n_ch, dtype=torch.float64)
    s2 = torch.zeros(n_ch, dtype=torch.float64)
    n = torch.zeros((), dtype=torch.float64)
    for img in images:
        brain = (img != 0).any(0)
        vals = img[:, brain].double()
        s += vals.sum(1)
        s2 += (vals**2).sum(1)
        n += brain.sum()
    mean = s / n.clamp(min=1)
    std = (s2 / n.clamp(min=1) - mean**2).clamp(min=1e-12).sqrt()
    return [float(v) for v in mean], [float(v) for v in std]


__all__ = ["PreprocessConfig", "Preprocessed", "ScaleToUnitd", "channel_stats", "preprocess",
           "spatial_transforms"]
