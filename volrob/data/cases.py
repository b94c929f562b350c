"""Load one manifest case into arrays, checking everything ``volrob manifest check`` checks.

``inspect_case`` collects every problem of a case (used by :mod:`volrob.data.checks`); ``load_case`` raises the
first one as a :class:`DataError` naming the offending file, so training and evaluation never see bad data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volrob.data.labels import get_convention
from volrob.data.manifest import Case, Manifest, sha256_file
from volrob.data.readers import Volume, read_channels, read_label
from volrob.errors import DataError

AFFINE_ATOL = 1e-4
"""Largest absolute difference (mm) tolerated between the affines (and spacings) of one case's files."""


@dataclass
class CaseData:
    """One case ready for a model: ``image`` ``(C, i, j, k)`` float32 in manifest modality order, canonical label,
    and the label in the file's own values (``raw_label``, uint8: what the convention's scoring regions are read
    from, e.g. BraTS 2024's resection cavity, which is background in the canonical label)."""

    id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    spacing: tuple[float, float, float]
    paths: dict[str, Path]
    raw_label: np.ndarray | None = None


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _geometry_problem(name: str, vol: Volume, ref_name: str, ref: Volume, path: Path) -> DataError | None:
    """A problem when ``vol`` and the reference volume do not share shape, spacing and affine."""
    if vol.shape != ref.shape:
        return DataError(f"{name} shape {vol.shape} differs from {ref_name} shape {ref.shape}", path=path)
    if not np.allclose(vol.spacing, ref.spacing, rtol=0.0, atol=AFFINE_ATOL):
        return DataError(f"{name} spacing {_fmt(vol.spacing)} differs from {ref_name} spacing {_fmt(ref.spacing)}",
                         path=path)
    diff = float(np.abs(vol.affine - ref.affine).max())
    if diff > AFFINE_ATOL:
        return DataError(f"{name} affine differs from {ref_name} affine (max difference {diff:.4g} > {AFFINE_ATOL:g})",
                         path=path)
    return None


def _hash_problems(manifest: Manifest, case: Case, paths: dict[str, Path]) -> list[DataError]:
    problems = []
    cache: dict[Path, str] = {}
    for key, expected in case.sha256.items():
        path = paths.get(key)
        if path is None or not path.is_file():
            continue  # a missing file is already reported by the reader
        if path not in cache:
            cache[path] = sha256_file(path)
        if cache[path] != expected.lower():
            problems.append(DataError(f"sha256 of {key} is {cache[path][:12]}…, manifest says {expected[:12]}…",
                                      path=path))
    return problems


def inspect_case(
    manifest: Manifest, case: Case, *, backend: str = "nibabel", verify_hashes: bool = False, keep: bool = True
) -> tuple[CaseData | None, list[DataError]]:
    """Read and cross-check every file of ``case``; returns the loaded data (when ``keep`` and no problems) and
    every problem found, each a :class:`DataError` naming its file."""
    problems: list[DataError] = []
    paths = {m: manifest.resolve(case.images[m].path) for m in manifest.modalities}
    if case.label is not None:
        paths["label"] = manifest.resolve(case.label)
    by_file: dict[Path, list[str]] = {}
    for m in manifest.modalities:
        by_file.setdefault(paths[m], []).append(m)
    volumes: dict[str, Volume] = {}
    for path, mods in by_file.items():  # a 4D file holding several modalities is read once
        try:
            vols = read_channels(path, [case.images[m].channel for m in mods], backend=backend)
        except DataError as err:
            problems.append(err)
            continue
        volumes.update(zip(mods, vols, strict=True))
    ref_name = next((m for m in manifest.modalities if m in volumes), None)
    for m in manifest.modalities:
        if ref_name is not None and m in volumes and m != ref_name:
            problem = _geometry_problem(m, volumes[m], ref_name, volumes[ref_name], paths[m])
            if problem is not None:
                problems.append(problem)
    label = raw_label = None
    if case.label is not None:
        try:
            label_vol = read_label(paths["label"], backend=backend)
        except DataError as err:
            problems.append(err)
        else:
            if ref_name is not None:
                problem = _geometry_problem("label", label_vol, ref_name, volumes[ref_name], paths["label"])
                if problem is not None:
                    problems.append(problem)
            convention = get_convention(case.label_convention)
            unknown = convention.unknown_values(label_vol.array)
            if unknown:
                problems.append(DataError(f"label values {unknown} are not allowed by convention "
                                          f"{convention.name!r} {convention.allowed}", path=paths["label"]))
            elif keep:
                label = convention.to_canonical(label_vol.array)
                raw_label = np.asarray(label_vol.array).astype(np.uint8)
    if verify_hashes:
        problems.extend(_hash_problems(manifest, case, paths))
    if problems or not keep or ref_name is None:
        return None, problems
    ref = volumes[ref_name]
    image = np.stack([volumes[m].array for m in manifest.modalities]).astype(np.float32, copy=False)
    return CaseData(case.id, image, label, ref.affine, ref.spacing, paths, raw_label), problems


def find_case(manifest: Manifest, case_id: str) -> Case:
    """The case named ``case_id``; an unknown id raises :class:`DataError` naming the manifest."""
    for case in manifest.cases:
        if case.id == case_id:
            return case
    raise DataError(f"no case {case_id!r} in the manifest", path=manifest.path)


def load_case(
    manifest: Manifest, case: Case | str, *, backend: str = "nibabel", verify_hashes: bool = False
) -> CaseData:
    """Load ``case`` (a :class:`Case` or its id); any problem ``check_manifest`` would report raises
    :class:`DataError` naming the offending file. Hashes are verified only when asked (it reads every byte)."""
    if isinstance(case, str):
        case = find_case(manifest, case)
    data, problems = inspect_case(manifest, case, backend=backend, verify_hashes=verify_hashes)
    if problems:
        raise problems[0]
    assert data is not None
    return data
