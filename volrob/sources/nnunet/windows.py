"""nnU-Net's sliding-window layout as a volrob :class:`~volrob.inference.windowed_grad.WindowPlan`.

- Padding: an image smaller than the patch along an axis is zero-padded (in the normalised space) to the patch,
  the extra half below and the rest above.
- Steps: with step fraction ``s`` (0.5 by default, i.e. volrob's overlap 0.5), ``n = ceil((size - patch) /
  (patch * s)) + 1`` windows per axis, spread evenly from 0 to ``size - patch`` and rounded half to even.
- Weights: a Gaussian over the patch (sigma = patch / 8 per axis, from a unit impulse at ``patch // 2`` filtered
  with scipy's ``gaussian_filter`` in constant mode), scaled to a maximum of 10, stored in float16 as nnU-Net does,
  with the zeros replaced by the smallest non-zero value; or ones for the ``constant`` blend.

The Gaussian is computed in nnU-Net's axis order and permuted to volrob's, so the weights are nnU-Net's own numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from volrob.errors import ConfigError
from volrob.inference.windowed_grad import WindowPlan, count_map
from volrob.sources.nnunet.axes import AxisOrder

SIGMA_SCALE = 1.0 / 8
GAUSSIAN_MAX = 10.0


def window_starts(size: int, patch: int, step: float) -> list[int]:
    """nnU-Net's window start positions along one axis of ``size >= patch`` voxels."""
    if size < patch or not 0 < step <= 1:
        raise ConfigError(f"window steps need size >= patch and 0 < step <= 1, got {size}, {patch}, {step}")
    n = math.ceil((size - patch) / (patch * step)) + 1
    if n == 1:
        return [0]
    stride = (size - patch) / (n - 1)
    return [round(stride * i) for i in range(n)]  # Python's round: half to even, as numpy's


@lru_cache(maxsize=8)
def nnunet_gaussian(patch: tuple[int, ...]) -> torch.Tensor:
    """nnU-Net's importance map over ``patch`` (its axis order), float16 values held as float32."""
    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    g = gaussian_filter(impulse, [p * SIGMA_SCALE for p in patch], 0, mode="constant", cval=0)
    g = torch.from_numpy(g / (g.max() / GAUSSIAN_MAX)).to(torch.float16)
    g[g == 0] = g[g != 0].min()
    return g.float()


@dataclass(frozen=True)
class NnunetPlanner:
    """A :class:`~volrob.inference.windowed_grad.WindowPlanner` laying windows as nnU-Net does.

    ``patch_size`` is in nnU-Net's order; the step fraction is ``1 - overlap`` and ``mode`` is ``gaussian`` or
    ``constant`` (the predictor's window settings, by default overlap 0.5 and gaussian: nnU-Net's defaults).
    """

    patch_size: tuple[int, int, int]
    axes: AxisOrder

    def importance(self, mode: str) -> torch.Tensor:
        """The window weights ``(*roi)`` in voxel order."""
        if mode == "constant":
            return torch.ones(self.axes.to_voxel(self.patch_size))
        if mode != "gaussian":
            raise ConfigError(f"window.mode must be gaussian or constant for nnunet models, got {mode!r}")
        return nnunet_gaussian(tuple(self.patch_size)).permute(*self.axes.nnunet_axis).clone()  # the cache stays

    def __call__(self, image_size: Sequence[int], roi_size: Sequence[int], overlap: float, mode: str, *,
                 device: torch.device, stitch_device: torch.device, dtype: torch.dtype) -> WindowPlan:
        roi = tuple(int(r) for r in roi_size)
        if roi != self.axes.to_voxel(self.patch_size):
            raise ConfigError(f"window.roi_size: this nnU-Net model only accepts its patch size "
                              f"{list(self.axes.to_voxel(self.patch_size))} (voxel order), got {list(roi)}")
        size = tuple(int(s) for s in image_size)
        low = [max(r - s, 0) // 2 for s, r in zip(size, roi, strict=True)]
        high = [max(r - s, 0) - lo for s, r, lo in zip(size, roi, low, strict=True)]
        padded = tuple(max(s, r) for s, r in zip(size, roi, strict=True))
        pad = tuple(v for i in reversed(range(3)) for v in (low[i], high[i]))
        starts = [window_starts(p, r, 1.0 - overlap) for p, r in zip(padded, roi, strict=True)]
        slices = tuple(tuple(slice(s, s + r) for s, r in zip(corner, roi, strict=True))
                       for corner in itertools.product(*starts))
        imp = self.importance(mode).to(device=device, dtype=dtype)[None, None]
        return WindowPlan(size, roi, pad, padded, slices, imp, count_map(slices, imp, padded, stitch_device))
