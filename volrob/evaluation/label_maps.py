"""Scoring a predicted label map against a reference label map, each in its own label convention.

The scoring regions are the reference convention's (TC, WT, ET; BraTS 2024: ET, NETC, SNFH, RC, TC, WT), read from
the raw values. A prediction in another convention is first translated through volrob's canonical classes (NCR,
ED, ET; so a BraTS 2024 resection cavity is background there, and a prediction in another convention never has
one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from volrob.data.labels import LabelConvention, get_convention
from volrob.errors import ConfigError, DataError
from volrob.evaluation.metric_set import MetricSet, ScoredCase


def _convention(c: str | LabelConvention) -> LabelConvention:
    return c if isinstance(c, LabelConvention) else get_convention(c)


def check_values(label: np.ndarray, convention: str | LabelConvention, what: str = "label map") -> None:
    """:class:`DataError` naming the values of ``label`` that ``convention`` does not allow."""
    conv = _convention(convention)
    bad = conv.unknown_values(label)
    if bad:
        raise DataError(f"{what} has values {bad} that convention {conv.name!r} does not allow {conv.allowed}")


def prediction_masks(pred: np.ndarray, pred_convention: str | LabelConvention,
                     ref_convention: str | LabelConvention) -> np.ndarray:
    """The reference convention's scoring regions ``(R, *spatial)`` of a raw predicted label map."""
    pc, rc = _convention(pred_convention), _convention(ref_convention)
    check_values(pred, pc, "prediction")
    raw = pred if pc.name == rc.name else rc.from_canonical(pc.to_canonical(pred))
    return rc.region_masks(raw)


def score_label_maps(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], metric_set: MetricSet, *,
                     pred_convention: str | LabelConvention, ref_convention: str | LabelConvention) -> ScoredCase:
    """Rows (and lesion-wise detail) of a predicted label map against a reference of the same shape."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.ndim != 3 or pred.shape != ref.shape:
        raise ConfigError(f"prediction and reference must be 3-D label maps of one shape, got {list(pred.shape)} "
                          f"and {list(ref.shape)}")
    rc = _convention(ref_convention)
    check_values(ref, rc, "reference")
    return metric_set.score(prediction_masks(pred, pred_convention, rc), rc.region_masks(ref), spacing,
                            rc.region_names)
