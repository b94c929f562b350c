"""The published "tiles" protocol: non-overlapping ROI tiles, each an independent forward pass, no blending.

Tiles start at multiples of the ROI from the volume's corner; the volume is zero-padded at its far end up to a
multiple of the ROI, so the last tile along an axis may hang over the edge, and the output is cropped back.
This is how VAFA-style anchors attack a volume (each tile on its own), kept to compare with their numbers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from volrob.inference.windowed_grad import WindowPlan


def tile_plan(image_size: Sequence[int], roi_size: Sequence[int], *, device: torch.device,
              stitch_device: torch.device, dtype: torch.dtype) -> WindowPlan:
    """Window plan of non-overlapping ROI tiles with unit weights (every voxel covered exactly once)."""
    image_size, roi_size = tuple(int(s) for s in image_size), tuple(int(r) for r in roi_size)
    padded = tuple(-(-s // r) * r for s, r in zip(image_size, roi_size, strict=True))
    pad: list[int] = []
    for i in reversed(range(len(image_size))):
        pad += [0, padded[i] - image_size[i]]
    starts = [range(0, p, r) for p, r in zip(padded, roi_size, strict=True)]
    corners = itertools.product(*starts)
    slices = tuple(tuple(slice(s, s + r) for s, r in zip(corner, roi_size, strict=True)) for corner in corners)
    importance = torch.ones((1, 1, *roi_size), dtype=dtype, device=device)
    count = torch.ones((1, 1, *padded), dtype=dtype, device=stitch_device)
    return WindowPlan(image_size, roi_size, tuple(pad), padded, slices, importance, count)
