"""Synthesise a BraTS-2021-style data set: case folders, ``manifest.json`` and ``synth_params.json``.

Case ``i`` depends only on ``(seed, i, shape, skull_strip)``, so it is identical whether 5 or 50 cases are asked
for; the split of the cases is drawn from the seed (and the number of cases).
"""

from __future__ import annotations

import json
import operator
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from volrob.data.manifest import Manifest
from volrob.data.synth.case import generate_case
from volrob.data.synth.contrast import MODALITIES
from volrob.data.synth.writer import write_case
from volrob.errors import ConfigError
from volrob.io import atomic_write_text

MIN_SIDE = 32
"""Smallest volume side (voxels) the anatomy is drawn for."""
PARAMS_FILE = "synth_params.json"


def _int(value: object, name: str, minimum: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {out}")
    return out


def check_options(*, cases: int, shape: Sequence[int], seed: int, val_fraction: float,
                  test_fraction: float) -> tuple[int, int, int]:
    """Validate the options of :func:`synthesize`; returns the shape as a 3-tuple of ints."""
    _int(cases, "cases", 1)
    _int(seed, "seed", 0)
    if isinstance(shape, (str, bytes)) or len(shape) != 3:
        raise ConfigError(f"shape must be three integers D H W, got {shape!r}")
    dims = tuple(_int(n, "shape side", MIN_SIDE) for n in shape)
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= float(frac) < 1.0:
            raise ConfigError(f"{name} must be a number in [0, 1), got {frac!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    return dims  # type: ignore[return-value]


def split_counts(cases: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) sizes: rounded fractions, at least one val/test case (when asked for) once cases >= 3,
    and at least one training case."""
    val, test = round(cases * val_fraction), round(cases * test_fraction)
    if cases >= 3:
        val = max(val, 1 if val_fraction > 0 else 0)
        test = max(test, 1 if test_fraction > 0 else 0)
    while val + test > cases - 1 and val + test > 0:
        if val >= test:
            val -= 1
        else:
            test -= 1
    return cases - val - test, val, test


def assign_splits(cases: int, seed: int, val_fraction: float = 0.2, test_fraction: float = 0.2) -> list[str]:
    """Split name of each case index, a seeded random assignment with :func:`split_counts` sizes."""
    _, val, test = split_counts(cases, val_fraction, test_fraction)
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))).permutation(cases)
    names = np.empty(cases, dtype=object)
    names[order[:val]] = "val"
    names[order[val:val + test]] = "test"
    names[order[val + test:]] = "train"
    return [str(n) for n in names]


def _prepare(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("output exists and is not a directory", path=out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError("output directory is not empty; refusing to overwrite (use --force to replace its files)",
                          path=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def synthesize(out_dir: str | Path, *, cases: int, shape: Sequence[int] = (96, 96, 96), seed: int = 0,
               val_fraction: float = 0.2, test_fraction: float = 0.2, skull_strip: bool = True,
               overwrite: bool = False, progress: bool = False) -> Manifest:
    """Write ``cases`` synthetic BraTS-2021-style cases into ``out_dir`` and return the saved manifest.

    Layout: ``out_dir/BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz`` (float32 images, uint8
    labels {0, 1, 2, 4}, 1 mm RAS affine), ``out_dir/manifest.json`` (written last) and ``out_dir/synth_params.json``
    (the options and what was drawn per case). A non-empty ``out_dir`` is refused unless ``overwrite``.
    """
    dims = check_options(cases=cases, shape=shape, seed=seed, val_fraction=val_fraction,
                         test_fraction=test_fraction)
    out_dir = Path(out_dir)
    _prepare(out_dir, overwrite)
    splits = assign_splits(cases, seed, val_fraction, test_fraction)
    entries, info = [], {}
    for index in tqdm(range(cases), desc="synth", unit="case", file=sys.stderr, disable=not progress):
        case = generate_case(index, shape=dims, seed=seed, skull_strip=skull_strip)
        entries.append(write_case(case, out_dir, splits[index]))
        info[case.id] = {"split": splits[index], **case.info}
    params = {"generator": "volrob.data.synth", "cases": cases, "shape": list(dims), "seed": seed,
              "val_fraction": val_fraction, "test_fraction": test_fraction, "skull_strip": skull_strip,
              "case_info": info}
    atomic_write_text(out_dir / PARAMS_FILE, json.dumps(params, indent=2) + "\n")
    manifest = Manifest(f"synthetic-seed{seed}", "synthetic", ".", "brats2021", MODALITIES, entries)
    manifest.save(out_dir / "manifest.json")
    return manifest
