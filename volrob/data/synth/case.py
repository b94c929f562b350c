"""One synthetic BraTS-like case in memory: four co-registered MRI sequences and a BraTS-2021 label map."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from volrob.data.synth import tissues as T
from volrob.data.synth.anatomy import build_anatomy
from volrob.data.synth.artefacts import bias_field, partial_volume, rician_noise
from volrob.data.synth.contrast import MODALITIES, jittered_table, render
from volrob.data.synth.noise import smooth_field
from volrob.data.synth.tumour import grow_tumour

CASE_PREFIX = "BraTS2021_"


def case_id(index: int) -> str:
    """BraTS-2021-style identifier of case ``index`` (``BraTS2021_00007``)."""
    return f"{CASE_PREFIX}{index:05d}"


def case_affine(shape: Sequence[int]) -> np.ndarray:
    """1 mm isotropic RAS affine whose world origin is the volume centre (voxel 0 at ``-(n - 1) / 2``)."""
    aff = np.eye(4)
    aff[:3, 3] = [-(int(n) - 1) / 2.0 for n in shape]
    return aff


def case_generators(seed: int, index: int) -> list[np.random.Generator]:
    """Independent generators (anatomy, tumour, contrast, artefacts) of case ``index``: depend on nothing else."""
    children = np.random.SeedSequence(seed, spawn_key=(0, index)).spawn(4)
    return [np.random.default_rng(c) for c in children]


@dataclass
class SynthCase:
    """Images (float32, zero outside ``mask``), BraTS-2021 labels (uint8), affine and what was drawn."""

    id: str
    images: dict[str, np.ndarray]
    seg: np.ndarray
    affine: np.ndarray
    mask: np.ndarray
    tissue: np.ndarray
    """Tissue codes after the tumour was placed (see :mod:`volrob.data.synth.tissues`)."""
    info: dict[str, object] = field(default_factory=dict)


def generate_case(index: int, *, shape: Sequence[int] = (96, 96, 96), seed: int = 0,
                  skull_strip: bool = True) -> SynthCase:
    """Synthesise case ``index`` of the data set with ``seed``; identical whatever the number of cases.

    With ``skull_strip`` (the default, as BraTS) images are zero outside the brain mask; otherwise scalp and skull
    are kept and only the background outside the head is zero.
    """
    shape = tuple(int(n) for n in shape)
    r_anat, r_tum, r_con, r_art = case_generators(seed, index)
    anat = build_anatomy(r_anat, shape)
    tissue, tumour = grow_tumour(r_tum, anat)
    support = anat.mask if skull_strip else anat.head
    texture = smooth_field(r_con, shape, max(1.0, 2.0 * anat.scale))
    tumour_texture = smooth_field(r_con, shape, max(1.5, 3.0 * anat.scale))
    blur = float(r_art.uniform(0.5, 0.8))
    images: dict[str, np.ndarray] = {}
    gains: dict[str, float] = {}
    for name in MODALITIES:
        table = jittered_table(r_con, name)
        img = partial_volume(render(tissue, tumour.oedema, table, texture, tumour_texture), blur)
        img *= bias_field(r_art, shape, float(r_art.uniform(0.1, 0.2)))
        gains[name] = float(np.exp(r_art.uniform(np.log(0.6), np.log(1.6))))
        sigma = float(r_art.uniform(0.015, 0.04)) * table[T.WM]
        values = rician_noise(r_art, img[support], sigma) * np.float32(gains[name])
        out = np.zeros(shape, dtype=np.float32)
        out[support] = np.maximum(values, np.float32(1e-3 * gains[name] * table[T.WM]))
        images[name] = out
    seg = np.where(support, tumour.labels, 0).astype(np.uint8)
    info = {"tumour": tumour.info(), "gain": gains, "blur_sigma": round(blur, 3), "skull_strip": skull_strip}
    return SynthCase(case_id(index), images, seg, case_affine(shape), support, tissue, info)
