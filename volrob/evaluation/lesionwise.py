"""Lesion-wise Dice and HD95 as the BraTS 2023 and 2024 challenges define them, for one region of one case.

1. Lesions: the reference's 26-connected components, where components that fall into one 26-connected component of
   the reference dilated ``dilation`` times (18-connected structure) merge into one lesion.
2. Hits: the predicted 26-connected components (BraTS 2024 glioma: merged by dilation the same way, and those of at
   most the region's threshold in voxels removed) that touch the lesion's own dilated mask.
3. Per lesion: Dice and surface-element HD95 (:mod:`volrob.evaluation.surface_elements`) between the lesion and the
   union of its hits; a lesion without hits scores Dice 0 and HD95 = the challenge's miss penalty.
4. False positives: predicted components that hit no lesion (Dice 0, HD95 = penalty each). Hits of lesions that are
   left out below still are not false positives.
5. Lesions whose volume (voxel count x voxel volume, mm³) is not above the volume threshold are left out.
6. Case score: sum over the kept lesions (plus penalty x false positives for HD95) divided by (kept lesions + false
   positives); when both counts are zero, Dice 1 and HD95 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from volrob.errors import ConfigError
from volrob.evaluation.challenges import Challenge, get_challenge
from volrob.evaluation.metrics import as_mask
from volrob.evaluation.surface import check_spacing
from volrob.evaluation.surface_elements import hd_surface_elements

COMPONENTS = np.ones((3, 3, 3), dtype=bool)
"""26-connectivity of components."""
DILATION = ndimage.generate_binary_structure(3, 2)
"""18-connected structuring element of the dilation."""


@dataclass(frozen=True)
class Lesion:
    """One reference lesion: its id (1-based), volume, the predicted components that hit it and its scores."""

    id: int
    volume_mm3: float
    hits: tuple[int, ...]
    dice: float
    hd95: float
    counted: bool


@dataclass(frozen=True)
class LesionWiseScore:
    """The lesion-wise scores of one region, with every lesion and the false-positive components (their ids and
    volumes in mm³)."""

    dice: float
    hd95: float
    lesions: tuple[Lesion, ...]
    false_positives: tuple[int, ...]
    false_positive_volumes_mm3: tuple[float, ...]

    @property
    def counted(self) -> int:
        """Lesions above the volume threshold (the ones in the score)."""
        return sum(1 for lesion in self.lesions if lesion.counted)

    @property
    def missed(self) -> int:
        """Counted lesions without any hit."""
        return sum(1 for lesion in self.lesions if lesion.counted and not lesion.hits)


def _grow(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape, strict=True))


def _union(boxes: Sequence[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(slice(min(b[i].start for b in boxes), max(b[i].stop for b in boxes)) for i in range(3))


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, DILATION, iterations=iterations) if iterations > 0 else mask.copy()


def merged_components(mask: np.ndarray, dilation: int) -> tuple[np.ndarray, int]:
    """Label map of ``mask``'s 26-connected components, merged where they share a component of the dilated mask
    (labels 1..n in raster order of the dilated components)."""
    out = np.zeros(mask.shape, dtype=np.int32)
    if not mask.any():
        return out, 0
    box = _grow(ndimage.find_objects(mask.astype(np.uint8))[0], dilation, mask.shape)
    dilated_labels, n = ndimage.label(_dilate(mask[box], dilation), structure=COMPONENTS)
    out[box] = np.where(mask[box], dilated_labels, 0)
    return out, int(n)


def _predicted(pred: np.ndarray, challenge: Challenge, region: str) -> tuple[np.ndarray, int]:
    """Predicted lesions: 26-connected components, or (BraTS 2024 glioma) merged ones without the small ones."""
    if not challenge.merge_predictions:
        labels, n = ndimage.label(pred, structure=COMPONENTS)
        return labels.astype(np.int32), int(n)
    labels, n = merged_components(pred, challenge.dilation_for(region))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.flatnonzero(sizes[1:] > challenge.threshold_for(region)) + 1
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
    return lut[labels], int(keep.size)


def lesion_wise(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], challenge: str | Challenge,
                region: str = "") -> LesionWiseScore:
    """Lesion-wise Dice and HD95 of one region's boolean masks ``(D, H, W)`` (see the module docstring); ``region``
    selects per-region parameters (BraTS 2024 glioma)."""
    p, g = as_mask(pred, "pred", 3), as_mask(gt, "gt", 3)
    if p.shape != g.shape:
        raise ConfigError(f"pred and gt shapes differ: {list(p.shape)} vs {list(g.shape)}")
    sp = check_spacing(spacing, 3)
    ch = challenge if isinstance(challenge, Challenge) else get_challenge(challenge)
    dilation, threshold, penalty = ch.dilation_for(region), ch.threshold_for(region), ch.miss_penalty_mm
    voxel_mm3 = math.prod(sp)
    lesions_map, n_lesions = merged_components(g, dilation)
    pred_map, n_pred = _predicted(p, ch, region)
    lesion_boxes = ndimage.find_objects(lesions_map, max_label=n_lesions)
    pred_boxes = ndimage.find_objects(pred_map, max_label=n_pred)
    lesions, hit_ids = [], set()
    for lid, lbox in enumerate(lesion_boxes, start=1):
        near = _grow(lbox, dilation, g.shape)
        reach = _dilate(lesions_map[near] == lid, dilation)
        hits = tuple(int(h) for h in np.unique(pred_map[near][reach]) if h)
        hit_ids.update(hits)
        box = _union([lbox, *(pred_boxes[h - 1] for h in hits)])
        lesion = lesions_map[box] == lid
        volume = float(np.count_nonzero(lesion)) * voxel_mm3
        if hits:
            hit = np.isin(pred_map[box], hits)
            dice = 2.0 * np.count_nonzero(lesion & hit) / (np.count_nonzero(lesion) + np.count_nonzero(hit))
            hd95 = hd_surface_elements(hit, lesion, sp, miss_mm=penalty)
        else:
            dice, hd95 = 0.0, penalty
        lesions.append(Lesion(lid, volume, hits, float(dice), float(hd95), volume > threshold))
    fps = tuple(i for i in range(1, n_pred + 1) if i not in hit_ids)
    fp_volumes = tuple(float(np.count_nonzero(pred_map[pred_boxes[i - 1]] == i)) * voxel_mm3 for i in fps)
    kept = [lesion for lesion in lesions if lesion.counted]
    denominator = len(kept) + len(fps)
    if denominator == 0:
        dice_score, hd_score = 1.0, 0.0
    else:
        dice_score = sum(lesion.dice for lesion in kept) / denominator
        hd_score = (sum(lesion.hd95 for lesion in kept) + penalty * len(fps)) / denominator
    return LesionWiseScore(float(dice_score), float(hd_score), tuple(lesions), fps, fp_volumes)
