"""Label conventions as configuration, their mapping to volrob's canonical classes, and their scoring regions.

Every convention is translated to one *canonical* class index used inside volrob (models predict these):
``0`` background, ``1`` NCR (necrotic / non-enhancing core), ``2`` ED (oedema), ``3`` ET (enhancing tumour).
Model regions are unions of classes: TC = NCR ∪ ET, WT = NCR ∪ ED ∪ ET, ET = ET.

BraTS 2024 glioma (``brats2024``) writes NETC 1, SNFH 2, ET 3 and resection cavity RC 4. As model targets NETC is
NCR, SNFH is ED, ET is ET and RC is background (a cavity is not tumour). Its *scoring* regions are the challenge's
six, computed from the raw label values: ET, NETC, SNFH, RC, TC = ET ∪ NETC, WT = ET ∪ NETC ∪ SNFH. Every other
convention is scored on TC, WT and ET.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from volrob.errors import ConfigError, DataError

CLASSES: tuple[str, ...] = ("background", "NCR", "ED", "ET")
REGIONS: tuple[str, ...] = ("TC", "WT", "ET")
REGION_CLASSES: dict[str, tuple[int, ...]] = {"TC": (1, 3), "WT": (1, 2, 3), "ET": (3,)}
OUTPUT_MODES: tuple[str, ...] = ("regions", "labels")
"""``regions``: three sigmoid channels (TC, WT, ET); ``labels``: softmax over the four canonical classes."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class LabelConvention:
    """How one dataset writes the tumour sub-regions into its label files."""

    name: str
    values: dict[str, int]
    description: str
    background: dict[str, int] = field(default_factory=dict)
    """Raw classes that are background for the models (BraTS 2024's RC), by name."""
    regions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Scoring regions as sets of raw values; empty: TC, WT, ET from the canonical classes."""

    @property
    def allowed(self) -> tuple[int, ...]:
        """Label values a file of this convention may contain (background 0 included)."""
        return (0, *sorted([*self.values.values(), *self.background.values()]))

    @property
    def scoring_regions(self) -> dict[str, tuple[int, ...]]:
        """Each scoring region's raw label values, in scoring order."""
        if self.regions:
            return dict(self.regions)
        return {r: tuple(sorted(self.values[CLASSES[c]] for c in cls)) for r, cls in REGION_CLASSES.items()}

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(self.scoring_regions)

    @property
    def canonical_regions(self) -> bool:
        """Whether the scoring regions are the models' own TC, WT, ET."""
        return self.region_names == REGIONS

    def region_masks(self, label: np.ndarray) -> np.ndarray:
        """Boolean scoring regions ``(R, *spatial)`` of a raw label map; unknown values raise :class:`DataError`."""
        bad = self.unknown_values(label)
        if bad:
            raise DataError(f"label values {bad} are not allowed by convention {self.name!r} {self.allowed}")
        arr = np.asarray(label)
        return np.stack([np.isin(arr, np.array(v)) for v in self.scoring_regions.values()])

    def prediction_regions(self, regions: np.ndarray) -> np.ndarray:
        """A model's boolean regions ``(3, *spatial)`` (TC, WT, ET) as this convention's scoring regions: the same
        masks where those are TC, WT, ET; otherwise through the label map the prediction stands for (nested
        reading, :func:`regions_to_canonical`), written in this convention's values."""
        masks = np.asarray(regions, dtype=bool)
        if self.canonical_regions:
            return masks
        return self.region_masks(self.from_canonical(regions_to_canonical(masks)))

    def unknown_values(self, label: np.ndarray) -> list[int]:
        """Sorted values present in ``label`` that this convention does not allow."""
        present = np.unique(np.asarray(label))
        return [v.item() for v in present if v not in self.allowed]

    def to_canonical(self, label: ArrayT) -> ArrayT:
        """Map raw label values to canonical class indices; unknown values raise :class:`DataError`."""
        if isinstance(label, torch.Tensor):
            return torch.as_tensor(self.to_canonical(label.detach().cpu().numpy()), device=label.device)
        bad = self.unknown_values(label)
        if bad:
            raise DataError(f"label values {bad} are not allowed by convention {self.name!r} {self.allowed}")
        out = np.zeros(np.shape(label), dtype=np.uint8)
        for cls, raw in self.values.items():
            out[np.asarray(label) == raw] = CLASSES.index(cls)
        return out

    def from_canonical(self, canonical: ArrayT) -> ArrayT:
        """Map canonical class indices back to this convention's raw values."""
        lut = np.zeros(len(CLASSES), dtype=np.int16)
        for cls, raw in self.values.items():
            lut[CLASSES.index(cls)] = raw
        if isinstance(canonical, torch.Tensor):
            return torch.as_tensor(lut, device=canonical.device)[canonical.long()]
        return lut[np.asarray(canonical).astype(np.int64)]


CONVENTIONS: dict[str, LabelConvention] = {
    c.name: c
    for c in (
        LabelConvention("brats2021", {"NCR": 1, "ED": 2, "ET": 4}, "BraTS 2017-2021: 1 NCR/NET, 2 ED, 4 ET"),
        LabelConvention("brats2023", {"NCR": 1, "ED": 2, "ET": 3}, "BraTS 2023: 1 NCR, 2 ED, 3 ET"),
        LabelConvention("msd", {"ED": 1, "NCR": 2, "ET": 3}, "MSD Task01: 1 oedema, 2 non-enhancing, 3 enhancing"),
        LabelConvention("brats2024", {"NCR": 1, "ED": 2, "ET": 3},
                        "BraTS 2024 glioma: 1 NETC, 2 SNFH, 3 ET, 4 RC (resection cavity, background for models)",
                        background={"RC": 4},
                        regions={"ET": (3,), "NETC": (1,), "SNFH": (2,), "RC": (4,), "TC": (1, 3), "WT": (1, 2, 3)}),
    )
}


def get_convention(name: str) -> LabelConvention:
    """Look up a label convention by name."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ConfigError(f"unknown label convention {name!r}; choose one of {sorted(CONVENTIONS)}") from None


def canonical_to_regions(canonical: ArrayT) -> ArrayT:
    """Canonical class map to boolean regions (TC, WT, ET) on a new axis before the three spatial axes.

    ``(D, H, W)`` -> ``(3, D, H, W)``; ``(B, D, H, W)`` -> ``(B, 3, D, H, W)``; a batched map with a singleton
    channel axis ``(B, 1, D, H, W)`` -> ``(B, 3, D, H, W)``.
    """
    is_t = isinstance(canonical, torch.Tensor)
    base = canonical[:, 0] if canonical.ndim == 5 and canonical.shape[1] == 1 else canonical
    if is_t:
        return torch.stack([torch.isin(base, torch.tensor(c, device=base.device)) for c in REGION_CLASSES.values()],
                           -4)
    return np.stack([np.isin(base, np.array(c)) for c in REGION_CLASSES.values()], axis=-4)


def regions_to_canonical(regions: ArrayT) -> ArrayT:
    """Boolean regions ``(..., 3, *spatial)`` to a canonical class map ``(..., *spatial)``.

    Nested reading as in BraTS post-processing: ET where ET; NCR where TC but not ET; ED where WT but not TC.
    """
    tc, wt, et = (regions[..., i, :, :, :].bool() if isinstance(regions, torch.Tensor)
                  else regions[..., i, :, :, :].astype(bool) for i in range(3))
    if isinstance(regions, torch.Tensor):
        out = torch.zeros(tc.shape, dtype=torch.uint8, device=regions.device)
    else:
        out = np.zeros(tc.shape, dtype=np.uint8)
    out[wt] = 2
    out[tc] = 1
    out[et] = 3
    return out


def logits_to_regions(logits: torch.Tensor, mode: str, threshold: float = 0.5) -> torch.Tensor:
    """Network output ``(B, C, *spatial)`` to boolean regions ``(B, 3, *spatial)`` for either output mode."""
    if mode == "regions":
        return torch.sigmoid(logits) > threshold
    if mode == "labels":
        return canonical_to_regions(logits.argmax(1))
    raise ConfigError(f"output mode must be one of {OUTPUT_MODES}, got {mode!r}")


def out_channels_for(mode: str) -> int:
    """Number of network output channels an output mode needs."""
    if mode not in OUTPUT_MODES:
        raise ConfigError(f"output mode must be one of {OUTPUT_MODES}, got {mode!r}")
    return 3 if mode == "regions" else len(CLASSES)
