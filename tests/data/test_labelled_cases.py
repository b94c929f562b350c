"""Selecting the cases a model is scored on: non-empty split, labels present, modality order agreed."""

from __future__ import annotations

import pytest

from volrob.data.manifest import MODALITIES, labelled_cases, manifest_from_json
from volrob.errors import DataError


def manifest(label_b: str | None):
    images = {m: f"{m}.nii.gz" for m in MODALITIES}
    return manifest_from_json({
        "format": "volrob-manifest", "version": 1, "label_convention": "brats2021",
        "cases": [{"id": "a", "split": "test", "images": images, "label": "a.nii.gz"},
                  {"id": "b", "split": "test" if label_b else "unlabelled", "images": images, "label": label_b}],
    })


def test_selects_labelled_split() -> None:
    assert [c.id for c in labelled_cases(manifest("b.nii.gz"), "test", MODALITIES)] == ["a", "b"]


def test_refusals() -> None:
    with pytest.raises(DataError, match="no cases in split 'val'"):
        labelled_cases(manifest("b.nii.gz"), "val", MODALITIES)
    with pytest.raises(DataError, match=r"cases without labels \(b\)"):
        labelled_cases(manifest(None), "unlabelled", MODALITIES)
    with pytest.raises(DataError, match="modalities .* differ from the model's"):
        labelled_cases(manifest("b.nii.gz"), "test", ["flair", "t1", "t1ce", "t2"])
