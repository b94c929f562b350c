"""Scan a dataset folder (BraTS 2021, BraTS 2023, MSD Task01) into a :class:`~volrob.data.manifest.Manifest`.

- ``brats2021``: ``<root>/<CASE>/<CASE>_{t1,t1ce,t2,flair,seg}.nii.gz`` (e.g. ``BraTS2021_00000``).
- ``brats2023``: ``<root>/<CASE>/<CASE>-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (any prefix: BraTS-GLI, BraTS-MEN, ...),
  with t1n -> t1, t1c -> t1ce, t2w -> t2, t2f -> flair.
- ``msd``: ``<root>/dataset.json``, ``imagesTr/*.nii.gz`` (4D, channel order from ``dataset.json["modality"]``),
  ``labelsTr/*.nii.gz``, ``imagesTs/*.nii.gz`` (unlabelled).

Case paths are stored relative to ``root``; cases without a label get split ``unlabelled``; labelled cases are
split train/val/test by a seeded shuffle of their sorted ids, so the same seed always gives the same manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volrob.data.manifest import MODALITIES, Case, ImageRef, Manifest, sha256_file
from volrob.errors import ConfigError, DataError


@dataclass(frozen=True)
class _Found:
    """A case as found on disk: id, modality -> reference, label path (all relative to root)."""

    id: str
    images: dict[str, ImageRef]
    label: str | None


@dataclass(frozen=True)
class _FolderLayout:
    """A layout with one folder per case and one file per modality named ``<case><sep><suffix>``."""

    convention: str
    sep: str
    suffixes: dict[str, str]  # file suffix -> volrob modality
    example: str


_FOLDER_LAYOUTS: dict[str, _FolderLayout] = {
    "brats2021": _FolderLayout(
        "brats2021", "_", {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"},
        "BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz",
    ),
    "brats2023": _FolderLayout(
        "brats2023", "-", {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"},
        "BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz",
    ),
}
_MSD_EXAMPLE = "dataset.json, imagesTr/*.nii.gz, labelsTr/*.nii.gz, imagesTs/*.nii.gz"
_MSD_NAMES: dict[str, str] = {"flair": "flair", "t1w": "t1", "t1": "t1", "t1gd": "t1ce", "t1ce": "t1ce",
                              "t1c": "t1ce", "t2w": "t2", "t2": "t2"}
NIFTI_EXTS: tuple[str, ...] = (".nii.gz", ".nii")


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")  # also skips macOS "._" resource forks


def _nifti(folder: Path, stem: str) -> Path | None:
    for ext in NIFTI_EXTS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _scan_folders(root: Path, layout: _FolderLayout) -> list[_Found]:
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
        cid = folder.name
        files = {sfx: _nifti(folder, f"{cid}{layout.sep}{sfx}") for sfx in (*layout.suffixes, "seg")}
        if not any(files.values()):
            continue  # not a case folder of this layout
        images: dict[str, ImageRef] = {}
        for sfx, mod in layout.suffixes.items():
            file = files[sfx]
            if file is None:
                raise DataError(f"case folder is missing modality {mod!r} (expected {cid}{layout.sep}{sfx}.nii.gz)",
                                path=folder)
            images[mod] = ImageRef(_rel(file, root))
        seg = files["seg"]
        found.append(_Found(cid, images, None if seg is None else _rel(seg, root)))
    return found


def _msd_channels(root: Path) -> dict[str, int]:
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DataError(f"MSD layout needs dataset.json ({_MSD_EXAMPLE})", path=meta_path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"not valid JSON ({err})", path=meta_path) from None
    modality = meta.get("modality") if isinstance(meta, dict) else None
    if not isinstance(modality, dict) or not modality:
        raise DataError('needs a "modality" object like {"0": "FLAIR", "1": "T1w", ...}', path=meta_path)
    channels: dict[str, int] = {}
    for key, name in modality.items():
        mod = _MSD_NAMES.get(str(name).lower())
        if mod is None or not str(key).isdigit():
            raise DataError(f"modality {key!r}: {name!r} is not one of the brain MRI modalities {sorted(_MSD_NAMES)}",
                            path=meta_path)
        if mod in channels:
            raise DataError(f"modality {mod!r} is listed twice", path=meta_path)
        channels[mod] = int(key)
    missing = [m for m in MODALITIES if m not in channels]
    if missing:
        raise DataError(f"modality list lacks {', '.join(missing)}", path=meta_path)
    return channels


def _scan_msd(root: Path) -> list[_Found]:
    channels = _msd_channels(root)
    found = []
    for sub, labelled in (("imagesTr", True), ("imagesTs", False)):
        folder = root / sub
        if not folder.is_dir():
            continue
        for img in sorted(p for p in folder.iterdir() if p.is_file() and _visible(p)):
            ext = next((e for e in NIFTI_EXTS if img.name.endswith(e)), None)
            if ext is None:
                continue
            cid = img.name[: -len(ext)]
            label = _nifti(root / "labelsTr", cid) if labelled else None
            images = {m: ImageRef(_rel(img, root), channels[m]) for m in MODALITIES}
            found.append(_Found(cid, images, None if label is None else _rel(label, root)))
    return found


_SCANNERS: dict[str, Callable[[Path], list[_Found]]] = {
    "brats2021": lambda r: _scan_folders(r, _FOLDER_LAYOUTS["brats2021"]),
    "brats2023": lambda r: _scan_folders(r, _FOLDER_LAYOUTS["brats2023"]),
    "msd": _scan_msd,
}
SCANNABLE: tuple[str, ...] = tuple(_SCANNERS)


def assign_splits(ids: list[str], *, val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Seeded split of labelled case ids: ``round(f * n)`` cases to val and to test, the rest to train."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    for key, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0:
            raise ConfigError(f"{key} must be in [0, 1], got {f!r}")
    if val_fraction + test_fraction > 1.0:
        raise ConfigError(f"val_fraction + test_fraction must be <= 1, got {val_fraction + test_fraction!r}")
    ordered = sorted(ids)
    n = len(ordered)
    n_test = int(np.floor(test_fraction * n + 0.5))
    n_val = min(int(np.floor(val_fraction * n + 0.5)), n - n_test)
    perm = np.random.default_rng(seed).permutation(n)
    splits = {}
    for rank, idx in enumerate(perm):
        splits[ordered[idx]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return splits


def _stored_root(root: Path, manifest_dir: str | Path | None) -> str:
    if manifest_dir is None:
        return root.as_posix()
    try:
        return Path(os.path.relpath(root, Path(manifest_dir).resolve())).as_posix()
    except ValueError:  # e.g. another drive on Windows: no relative path exists
        return root.as_posix()


def _hashes(found: _Found, root: Path) -> dict[str, str]:
    cache: dict[str, str] = {}
    out: dict[str, str] = {}
    named = [(m, ref.path) for m, ref in found.images.items()] + ([("label", found.label)] if found.label else [])
    for key, rel in named:
        if rel not in cache:
            cache[rel] = sha256_file(root / rel)
        out[key] = cache[rel]
    return out


def build_manifest(
    root: str | Path,
    layout: str,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    hash_files: bool = False,
    name: str | None = None,
    manifest_dir: str | Path | None = None,
) -> Manifest:
    """Scan ``root`` laid out as ``layout`` into a manifest.

    ``root`` is stored absolute, or relative to ``manifest_dir`` when given (save the manifest there: an unsaved
    manifest resolves a relative root against the working directory). ``hash_files`` records every file's sha256.
    """
    if layout not in _SCANNERS:
        raise ConfigError(f"layout must be one of {list(SCANNABLE)}, got {layout!r}")
    assign_splits([], val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)  # validates the fractions
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError("dataset root is not a folder", path=root)
    found = _SCANNERS[layout](root)
    expected = _FOLDER_LAYOUTS[layout].example if layout in _FOLDER_LAYOUTS else _MSD_EXAMPLE
    if not found:
        raise DataError(f"no {layout} cases found; expected {expected}", path=root)
    ids = [f.id for f in found]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"duplicate case ids {dup}", path=root)
    labelled = [f.id for f in found if f.label is not None]
    splits = assign_splits(labelled, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    convention = "msd" if layout == "msd" else _FOLDER_LAYOUTS[layout].convention
    cases = [
        Case(f.id, splits.get(f.id, "unlabelled"), f.images, f.label, convention,
             _hashes(f, root) if hash_files else {})
        for f in sorted(found, key=lambda f: f.id)
    ]
    return Manifest(name if name is not None else root.name, layout, _stored_root(root, manifest_dir), convention,
                    MODALITIES, cases)
