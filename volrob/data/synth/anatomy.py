"""Normal head anatomy as a tissue map: scalp, skull, CSF, folded cortex, white matter, deep nuclei, ventricles.

Geometry is built in a *head frame* (millimetres from the brain centre; x left→right, y posterior→anterior,
z inferior→superior) from implicit shapes. The brain is a perturbed ellipsoid whose semi-axes follow the volume
size, so a 96³ volume holds a brain at about half adult size; thicknesses scale with it (``Anatomy.scale``) but
never drop below what a voxel grid can show. Cortical folding: sulci are the zero sheets of a smooth random field
sampled in radially compressed coordinates (so the sheets run roughly perpendicular to the surface), cut to a
random sulcal depth and lined by a grey-matter ribbon.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from volrob.data.synth import tissues as T
from volrob.data.synth.noise import NoiseVolume, smooth_field

ADULT_SEMI_AXES = np.array([68.0, 84.0, 62.0])
"""Approximate adult brain semi-axes in mm (left-right, anterior-posterior, inferior-superior)."""
BRAIN_FRACTION = np.array([0.355, 0.40, 0.35])
"""Brain semi-axes as a fraction of the volume's sides (before per-case jitter)."""


@dataclass
class Anatomy:
    """One case's normal anatomy (arrays of the volume's shape)."""

    tissue: np.ndarray
    """uint8 tissue codes (see :mod:`volrob.data.synth.tissues`)."""
    brain: np.ndarray
    """Parenchyma (everything inside the pial surface), bool."""
    mask: np.ndarray
    """Skull-stripped mask as in BraTS: brain plus a thin rim of surrounding CSF, bool."""
    head: np.ndarray
    """Everything inside the skin, bool."""
    depth: np.ndarray
    """Approximate depth below the brain surface in mm (negative outside), float32."""
    centre: np.ndarray
    """Brain centre in voxel coordinates."""
    rotation: np.ndarray
    """3x3 rotation: head-frame vector = ``rotation @ (voxel - centre)``."""
    axes: np.ndarray
    """Brain semi-axes in mm (left-right, anterior-posterior, inferior-superior)."""
    scale: float
    """Brain size relative to an adult brain."""

    def to_head(self, points: np.ndarray) -> np.ndarray:
        """Voxel coordinates ``(..., 3)`` to head-frame millimetres."""
        return (np.asarray(points, dtype=np.float64) - self.centre) @ self.rotation.T

    def to_voxel(self, points: np.ndarray) -> np.ndarray:
        """Head-frame millimetres ``(..., 3)`` to voxel coordinates."""
        return np.asarray(points, dtype=np.float64) @ self.rotation + self.centre


def random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """A rotation matrix with yaw, pitch and roll drawn uniformly in ``±max_degrees``."""
    a, b, c = np.deg2rad(rng.uniform(-max_degrees, max_degrees, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_coordinates(shape: Sequence[int], centre: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Head-frame coordinates (mm) of every voxel, shape ``(3, *shape)`` float32."""
    idx = np.ogrid[tuple(slice(0, n) for n in shape)]
    rel = [(g - c).astype(np.float32) for g, c in zip(idx, centre, strict=True)]
    return np.stack([sum(rotation[r, k] * rel[k] for k in range(3)) for r in range(3)]).astype(np.float32)


def _ellipsoid(u: np.ndarray, v: np.ndarray, w: np.ndarray, c: Sequence[float], r: Sequence[float]) -> np.ndarray:
    return ((u - c[0]) / r[0]) ** 2 + ((v - c[1]) / r[1]) ** 2 + ((w - c[2]) / r[2]) ** 2 < 1.0


def _deep_structures(u: np.ndarray, v: np.ndarray, w: np.ndarray, tissue: np.ndarray, vent: float) -> None:
    """Paint thalami, lentiform nuclei, lateral and third ventricles and caudate nuclei into ``tissue`` (a view).

    ``u, v, w`` are head coordinates divided by the brain semi-axes; ``vent`` scales ventricle size.
    """
    for s in (-1.0, 1.0):
        tissue[_ellipsoid(u, v, w, (s * 0.10, -0.14, -0.10), (0.10, 0.16, 0.11))] = T.DEEP_GM  # thalamus
        tissue[_ellipsoid(u, v, w, (s * 0.30, 0.06, -0.06), (0.06, 0.17, 0.11))] = T.DEEP_GM  # lentiform
    for s in (-1.0, 1.0):
        t = (v - 0.0) / 0.55  # along the ventricle, -1 atrium .. +1 frontal horn tip
        uc = s * (0.085 + 0.06 * (1.0 - t))
        wc = 0.03 + 0.17 * (1.0 - t**2)
        du, dw = (u - uc) * s, w - wc
        theta = np.deg2rad(30.0)
        major = du * np.sin(theta) + dw * np.cos(theta)
        minor = du * np.cos(theta) - dw * np.sin(theta)
        ru = vent * 0.07 * (1.0 + 0.5 * t**2)
        rw = vent * 0.14 * (1.0 + 0.3 * t**2)
        taper = np.clip(1.0 - t**6, 0.0, None)
        tissue[(major / rw) ** 2 + (minor / ru) ** 2 < taper] = T.CSF
    third = (np.abs(u) < 0.015 * vent) & (np.abs(v + 0.08) < 0.14) & (w > -0.26) & (w < -0.02)
    tissue[third] = T.CSF
    for s in (-1.0, 1.0):  # caudate head and body indent the lateral wall: crescent-shaped ventricles
        tissue[_ellipsoid(u, v, w, (s * 0.18, 0.24, 0.07), (0.065, 0.16, 0.11))] = T.DEEP_GM
        tissue[_ellipsoid(u, v, w, (s * 0.215, -0.02, 0.16), (0.035, 0.22, 0.05))] = T.DEEP_GM


def build_anatomy(rng: np.random.Generator, shape: Sequence[int]) -> Anatomy:
    """Draw one head: size, pose, outline, folding pattern, ventricle size; returns its tissue map."""
    shape = tuple(int(n) for n in shape)
    dims = np.array(shape, dtype=np.float64)
    axes = BRAIN_FRACTION * dims * rng.uniform(0.9, 1.0) * rng.uniform(0.96, 1.04, 3)
    scale = float(np.mean(axes / ADULT_SEMI_AXES))
    mean_axis = float(axes.mean())
    centre = (dims - 1) / 2 + rng.uniform(-0.015, 0.015, 3) * dims
    rotation = random_rotation(rng, 6.0)
    x, y, z = head_coordinates(shape, centre, rotation)

    # Outline: ellipsoid broader at the back, flatter underneath, perturbed by low-frequency noise.
    ax_x = axes[0] * (1.0 - 0.07 * y / axes[1])
    ax_z = np.where(z < 0, axes[2] * 0.85, axes[2])
    rho = np.sqrt((x / ax_x) ** 2 + (y / axes[1]) ** 2 + (z / ax_z) ** 2)
    outline = smooth_field(rng, shape, 0.25 * mean_axis)
    rho_eff = rho + 0.035 * outline
    depth = ((1.0 - rho_eff) * mean_axis).astype(np.float32)
    brain = depth > 0

    gm = max(1.8, 3.2 * scale)
    cleft = max(0.5, 0.7 * scale)
    csf_layer, skull, scalp = max(1.5, 3.0 * scale), max(2.5, 6.0 * scale), max(2.5, 6.0 * scale)
    strip = min(csf_layer, max(1.0, 1.5 * scale))

    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[depth > -(csf_layer + skull + scalp)] = T.SCALP
    tissue[depth > -(csf_layer + skull)] = T.SKULL
    tissue[depth > -csf_layer] = T.CSF
    tissue[brain] = T.WM

    # Folded cortex in the outer band.
    sulcal_depth = np.clip(0.26 + 0.04 * smooth_field(rng, shape, 0.3 * mean_axis), 0.12, None) * mean_axis
    band = brain & (depth < sulcal_depth + gm + 1.0)
    fold = NoiseVolume(rng, shape, max(2.0, 4.2 * scale))
    pts = np.stack([x[band], y[band], z[band]])
    radial = (1.0 - 0.85 * (1.0 - rho_eff[band])) / np.maximum(rho[band], 1e-3)
    dist = np.abs(fold.sample(pts * radial + (dims[:, None] - 1) / 2)) * max(2.0, 4.2 * scale)
    d_band, s_band = depth[band], sulcal_depth[band]
    band_tissue = np.full(d_band.shape, T.WM, dtype=np.uint8)
    band_tissue[((dist < cleft + gm) & (d_band < s_band + gm)) | (d_band < gm)] = T.GM
    band_tissue[(dist < cleft) & (d_band < s_band)] = T.CSF
    tissue[band] = band_tissue

    # Interhemispheric fissure above the corpus callosum, lined by medial cortex.
    xm = np.abs(x + 0.8 * outline)
    callosal = (y / (0.62 * axes[1])) ** 2 + ((z + 0.2 * axes[2]) / (0.55 * axes[2])) ** 2
    fissure = max(0.6, 1.0 * scale)
    tissue[brain & (xm < fissure + gm) & (callosal > (1.0 - gm / (0.55 * axes[2])) ** 2)] = T.GM
    tissue[brain & (xm < fissure) & (callosal > 1.0)] = T.CSF

    # Deep nuclei and ventricles, computed only in a central box.
    half = np.ceil(np.array([0.45, 0.72, 0.5]) * axes).astype(int) + 2
    lo = np.maximum(np.round(centre).astype(int) - half, 0)
    hi = np.minimum(np.round(centre).astype(int) + half + 1, dims.astype(int))
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    _deep_structures(x[box] / axes[0], y[box] / axes[1], z[box] / axes[2], tissue[box], rng.uniform(0.8, 1.35))

    return Anatomy(
        tissue=tissue,
        brain=brain,
        mask=depth > -strip,
        head=depth > -(csf_layer + skull + scalp),
        depth=depth,
        centre=centre,
        rotation=rotation,
        axes=axes,
        scale=scale,
    )
