"""Pairing label-map files by case id: predictions with references.

A file's case id is its name without ``.nii`` / ``.nii.gz`` and without one trailing ``-seg``, ``_seg``, ``-pred``
or ``_pred`` (``BraTS-GLI-00001-000-seg.nii.gz`` and ``BraTS-GLI-00001-000.nii.gz`` are the same case, and so are
volrob's own ``CASE_pred.nii.gz`` predictions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from volrob.data.readers import NIFTI_SUFFIXES, file_suffix
from volrob.errors import DataError

ID_SUFFIXES: tuple[str, ...] = ("-seg", "_seg", "-pred", "_pred")


def case_id(path: str | Path) -> str:
    """The case id of a label-map file name (see the module docstring)."""
    name = Path(path).name
    stem = name[: len(name) - len(file_suffix(name))] if file_suffix(name) in NIFTI_SUFFIXES else Path(name).stem
    for suffix in ID_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def label_files(location: str | Path, what: str) -> dict[str, Path]:
    """Case id -> file of a NIfTI file or of every NIfTI file directly in a folder; two files of one id, an empty
    folder or a missing path raise :class:`DataError`."""
    path = Path(location)
    if path.is_file():
        if file_suffix(path) not in NIFTI_SUFFIXES:
            raise DataError(f"{what} must be a NIfTI file (.nii or .nii.gz) or a folder of them", path=path)
        return {case_id(path): path}
    if not path.is_dir():
        raise DataError(f"{what} does not exist", path=path)
    found: dict[str, Path] = {}
    for f in sorted(p for p in path.iterdir() if p.is_file() and file_suffix(p) in NIFTI_SUFFIXES):
        cid = case_id(f)
        if cid in found:
            raise DataError(f"{found[cid].name} and {f.name} are both case {cid!r}", path=path)
        found[cid] = f
    if not found:
        raise DataError(f"{what} folder holds no NIfTI files (.nii or .nii.gz)", path=path)
    return found


@dataclass(frozen=True)
class Pairing:
    """Matched (case id, prediction, reference) in reference order, and the ids found on one side only."""

    pairs: list[tuple[str, Path, Path]]
    without_reference: list[str]
    without_prediction: list[str]


def pair_files(predictions: dict[str, Path], references: dict[str, Path]) -> Pairing:
    """Match predictions to references by case id. A single prediction and a single reference always pair (under
    the reference's id)."""
    if len(predictions) == 1 and len(references) == 1:
        (_, pred), (rid, ref) = next(iter(predictions.items())), next(iter(references.items()))
        return Pairing([(rid, pred, ref)], [], [])
    pairs = [(cid, predictions[cid], ref) for cid, ref in references.items() if cid in predictions]
    return Pairing(pairs, sorted(set(predictions) - set(references)),
                   [cid for cid in references if cid not in predictions])
