"""The plain ROI-crop protocol: attack and score one ROI-sized crop of each preprocessed volume, as many papers
do, instead of the whole volume.

The crop is centred on the whole-tumour centroid (``"tumour"``; the volume centre when the case has no tumour) or
on the volume centre (``"centre"``), shifted to lie inside the volume; along an axis shorter than the ROI it is the
whole axis. Scores of this protocol are computed on the crop (preprocessed grid), not on the source grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from volrob.errors import ConfigError

CROP_CENTRES: tuple[str, ...] = ("tumour", "centre")


def crop_box(shape: Sequence[int], roi: Sequence[int], centre: str,
             wt: torch.Tensor | np.ndarray | None = None) -> tuple[slice, ...]:
    """Spatial slices of the ROI crop of a volume of ``shape`` (``wt``: whole-tumour mask for ``"tumour"``)."""
    if centre not in CROP_CENTRES:
        raise ConfigError(f"roi_crop must be one of {list(CROP_CENTRES)}, got {centre!r}")
    if len(shape) != len(roi):
        raise ConfigError(f"roi_crop: ROI {list(roi)} does not match the volume's {len(shape)} axes")
    mid = [(n - 1) / 2 for n in shape]
    if centre == "tumour" and wt is not None:
        idx = np.argwhere(np.asarray(wt, dtype=bool))
        if len(idx):
            mid = list(idx.mean(axis=0))
    out = []
    for n, r, c in zip(shape, roi, mid, strict=True):
        r = min(int(r), int(n))
        start = int(np.clip(round(c - (r - 1) / 2), 0, n - r))
        out.append(slice(start, start + r))
    return tuple(out)
