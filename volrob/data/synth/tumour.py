"""A glioma per case: irregular core (necrosis inside an enhancing rim), surrounding oedema, mass effect.

Sizes are drawn relative to the brain (``core_radius`` 13–36 % of the mean brain semi-axis, i.e. about 9–25 mm at
adult scale; the oedema reaches a further 35–100 % of the core radius). The core is a randomly oriented,
anisotropic, noise-perturbed ellipsoid centred in the white matter of one hemisphere. Larger cores are more often
necrotic; the enhancing rim is at least 1.6 voxels thick and irregular; small cores without necrosis enhance
throughout with non-enhancing patches. Oedema spreads from the core surface by a noise-modulated margin, far into
white matter, less into deep and cortical grey matter, never into CSF. The core pushes the surrounding anatomy
outwards (displacement decaying as 1/r², zero at the brain surface).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from volrob.data.synth import tissues as T
from volrob.data.synth.anatomy import Anatomy, random_rotation
from volrob.data.synth.noise import smooth_field

BRATS_NCR, BRATS_ED, BRATS_ET = 1, 2, 4
OEDEMA_REACH: dict[int, float] = {T.WM: 1.0, T.DEEP_GM: 0.7, T.GM: 0.35}
"""Oedema margin multiplier per tissue (tissues not listed receive none)."""


@dataclass
class Tumour:
    """One tumour: BraTS-2021 labels, the oedema signal weight, and what was drawn."""

    labels: np.ndarray
    """uint8 BraTS-2021 labels {0, 1 NCR, 2 ED, 4 ET}."""
    oedema: np.ndarray
    """float32 weight in [0, 1] of the oedema signal (0 outside the oedema)."""
    centre: np.ndarray
    """Core centre in voxel coordinates."""
    core_radius: float
    margin: float
    necrotic: bool
    hemisphere: str

    def info(self) -> dict[str, object]:
        """JSON-serialisable summary of what was drawn."""
        return {"centre_voxel": [round(float(c), 2) for c in self.centre], "core_radius_mm": round(self.core_radius, 2),
                "oedema_margin_mm": round(self.margin, 2), "necrotic": self.necrotic, "hemisphere": self.hemisphere}


def _pick_centre(rng: np.random.Generator, anat: Anatomy, radius: float) -> tuple[np.ndarray, str]:
    """A white-matter voxel of a random hemisphere deep enough for ``radius`` (relaxed until one exists)."""
    side = float(rng.choice([-1.0, 1.0]))
    need = radius * 0.9 + 1.0
    while True:
        idx = np.flatnonzero((anat.tissue == T.WM) & (anat.depth > need))
        pts = np.stack(np.unravel_index(idx, anat.tissue.shape), axis=-1)
        head = anat.to_head(pts)
        ok = (side * head[:, 0] > 0.12 * anat.axes[0]) & (np.abs(head[:, 1]) < 0.75 * anat.axes[1])
        if ok.any() or need <= 1.0:
            pts = pts[ok] if ok.any() else pts
            return pts[rng.integers(len(pts))].astype(np.float64), "right" if side > 0 else "left"
        need *= 0.8


def _box(centre: np.ndarray, radius: float, shape: tuple[int, ...]) -> tuple[slice, ...]:
    lo = np.maximum(np.floor(centre - radius).astype(int), 0)
    hi = np.minimum(np.ceil(centre + radius).astype(int) + 1, shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _mass_effect(tissue: np.ndarray, anat: Anatomy, box: tuple[slice, ...], d: np.ndarray,
                 core: float, push: float, reach: float) -> np.ndarray:
    """Tissue in ``box`` after pushing the anatomy radially away from the core (nearest-neighbour resampling)."""
    r = np.sqrt((d**2).sum(0))
    mag = push * (core / np.maximum(r, core)) ** 2 * np.clip(1.0 - (r / reach) ** 2, 0.0, None) ** 2
    mag *= np.clip(anat.depth[box] / 3.0, 0.0, 1.0)
    src = np.stack(np.mgrid[box]).astype(np.float32) - mag * d / np.maximum(r, 1e-3)
    return ndi.map_coordinates(tissue, src, order=0, mode="nearest")


def _core(rng: np.random.Generator, d: np.ndarray, core: float, brain: np.ndarray,
          mean_axis: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Necrosis, non-enhancing patches and enhancing tumour (boolean masks over the box) and whether necrotic."""
    shape = brain.shape
    ratios = rng.uniform(0.75, 1.3, 3)
    ratios /= np.cbrt(ratios.prod())
    radii = (core * ratios).astype(np.float32)[:, None, None, None]
    q = np.einsum("ij,j...->i...", random_rotation(rng, 180.0).astype(np.float32), d) / radii
    qn = np.sqrt((q**2).sum(0))
    n_scale = max(1.5, 0.45 * core)
    solid = (qn + rng.uniform(0.12, 0.3) * smooth_field(rng, shape, n_scale) < 1.0) & brain

    rim = max(1.6, rng.uniform(0.15, 0.35) * core)
    necrotic = bool(rng.random() < np.clip((core / mean_axis - 0.12) / 0.12, 0.1, 0.95)) and core - rim >= 2.0
    inner = qn + rng.uniform(0.08, 0.2) * smooth_field(rng, shape, n_scale)
    patches = smooth_field(rng, shape, max(1.5, 0.3 * core))
    ncr = solid & (inner < 1.0 - rim / core) & (ndi.distance_transform_edt(solid) > 1.5)
    necrotic = necrotic and int(ncr.sum()) >= 6
    if necrotic:
        net = np.zeros_like(solid)
    else:
        ncr = np.zeros_like(solid)
        net = solid & (patches > rng.uniform(0.7, 1.3))
    return ncr, net, solid & ~ncr & ~net, necrotic


def _oedema(rng: np.random.Generator, local: np.ndarray, solid: np.ndarray, brain: np.ndarray,
            margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Oedema mask over the box and its signal weight: 1 next to the core, fading linearly to 0.2 at the reach
    (the labelled edge), so the boundary has little contrast, as in real FLAIR."""
    dist = ndi.distance_transform_edt(~solid)
    allowed = np.zeros(local.shape, dtype=np.float32)
    for code, mult in OEDEMA_REACH.items():
        allowed[local == code] = mult
    reach = margin * np.clip(1.0 + 0.45 * smooth_field(rng, local.shape, max(2.0, 0.35 * margin)), 0.2, None)
    reach *= allowed
    ed = brain & ~solid & (allowed > 0) & ((dist <= reach) | (dist <= 1.5))
    weight = np.clip(1.0 - 0.8 * dist / np.maximum(reach, 1.0), 0.2, 1.0).astype(np.float32)
    return ed, weight


def grow_tumour(rng: np.random.Generator, anat: Anatomy, attempts: int = 8) -> tuple[np.ndarray, Tumour]:
    """Place a tumour in ``anat``; returns the new tissue map (anatomy displaced, tumour painted) and the tumour.

    A draw whose core or oedema has fewer than 8 voxels (possible in small volumes) is redrawn, up to ``attempts``.
    """
    shape = anat.tissue.shape
    mean_axis = float(anat.axes.mean())
    for _ in range(attempts):
        core = mean_axis * rng.uniform(0.13, 0.36)
        centre, side = _pick_centre(rng, anat, core)
        margin = core * rng.uniform(0.35, 1.0) + 1.5
        reach = max(2.5 * core, core + 1.6 * margin + 3.0)
        box = _box(centre, reach, shape)
        d = np.stack(np.mgrid[box]).astype(np.float32) - centre.astype(np.float32)[:, None, None, None]
        local = _mass_effect(anat.tissue, anat, box, d, core, core * rng.uniform(0.15, 0.4), reach)
        ncr, net, et, necrotic = _core(rng, d, core, anat.brain[box], mean_axis)
        ed, weight = _oedema(rng, local, ncr | net | et, anat.brain[box], margin)
        if et.sum() + ncr.sum() >= 8 and ed.sum() >= 8:
            break

    local[ncr] = T.NCR
    local[net] = T.NET
    local[et] = T.ET
    tissue = anat.tissue.copy()
    tissue[box] = local
    labels = np.zeros(shape, dtype=np.uint8)
    labels[box][ncr | net] = BRATS_NCR
    labels[box][et] = BRATS_ET
    labels[box][ed] = BRATS_ED
    oedema = np.zeros(shape, dtype=np.float32)
    oedema[box][ed] = weight[ed]
    return tissue, Tumour(labels, oedema, centre, float(core), float(margin), necrotic, side)
