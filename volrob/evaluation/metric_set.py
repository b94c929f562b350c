"""The metric set a run scores with: which metrics (each row names its definition), the lesion-wise challenge, and
the empty-mask policy — resolved from the data's label convention unless given.

Metrics (the ``metric`` column of every row):

- ``dice``: ``2|P ∩ G| / (|P| + |G|)``;
- ``hd95``: 95th-percentile Hausdorff distance between boundary-voxel centres (MONAI,
  :mod:`volrob.evaluation.surface`); a region on one side only scores the empty policy's value;
- ``hd95_brats``: 95th percentile between area-weighted surface elements, as the official BraTS 2023+ code
  (:mod:`volrob.evaluation.surface_elements`); a region on one side only scores the challenge's miss penalty (or,
  without a challenge, the empty policy's value);
- ``nsd``: normalised surface Dice at ``nsd_tolerance_mm`` (MONAI's voxel counting);
- ``lesion_dice``, ``lesion_hd95``: the BraTS lesion-wise scores of the challenge (:mod:`volrob.evaluation.lesionwise`).

Defaults: BraTS conventions use the official definitions — ``dice, hd95_brats, nsd`` for brats2021, plus
``lesion_dice, lesion_hd95`` for brats2023 (challenge ``gli``) and brats2024 (``gli2024``), whose challenge also sets
``hd95_brats``'s miss penalty; other conventions use ``dice, hd95, nsd``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from volrob.errors import ConfigError
from volrob.evaluation.challenges import Challenge, get_challenge
from volrob.evaluation.empty_policy import BRATS_HD95_MM, get_policy
from volrob.evaluation.lesionwise import LesionWiseScore, lesion_wise
from volrob.evaluation.metrics import HD_PERCENTILE, as_mask, region_metrics
from volrob.evaluation.surface import check_spacing
from volrob.evaluation.surface_elements import hd_surface_elements

DEFINITIONS: dict[str, str] = {
    "dice": "Dice 2|P∩G|/(|P|+|G|); both empty 1, one empty 0",
    "hd95": "95th-percentile Hausdorff distance (mm) between boundary-voxel centres (MONAI); both empty 0, one "
            "empty the empty policy's value",
    "hd95_brats": "95th-percentile Hausdorff distance (mm) between area-weighted surface elements (DeepMind "
                  "surface-distance, official BraTS 2023+ code); both empty 0, one empty the miss penalty",
    "nsd": "normalised surface Dice at the tolerance (MONAI, voxel counting); both empty 1, one empty 0",
    "lesion_dice": "BraTS lesion-wise Dice of the challenge",
    "lesion_hd95": "BraTS lesion-wise HD95 (mm, surface elements) of the challenge",
}
METRICS: tuple[str, ...] = tuple(DEFINITIONS)
LEGACY_METRICS: tuple[str, ...] = ("dice", "hd95", "nsd")
"""The metric set of volrob before the official BraTS definitions (and of non-BraTS conventions)."""
LESION_METRICS: tuple[str, ...] = ("lesion_dice", "lesion_hd95")
DEFAULTS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "brats2021": (("dice", "hd95_brats", "nsd"), None),
    "brats2023": (("dice", "hd95_brats", "nsd", *LESION_METRICS), "gli"),
    "brats2024": (("dice", "hd95_brats", "nsd", *LESION_METRICS), "gli2024"),
}


def check_metrics(metrics: Any) -> tuple[str, ...]:
    """``metrics`` as a tuple of distinct known metric names (a comma-separated string is accepted)."""
    names = [m.strip() for m in metrics.split(",") if m.strip()] if isinstance(metrics, str) else metrics
    if not isinstance(names, list | tuple) or not names or not all(isinstance(m, str) for m in names):
        raise ConfigError(f"metrics must be a non-empty list of names from {list(METRICS)}, got {metrics!r}")
    unknown = [m for m in names if m not in DEFINITIONS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"metrics: {list(names)} names a metric twice")
    return tuple(names)


@dataclass
class ScoredCase:
    """Tidy ``{region, metric, value}`` rows of one case and, per region, the lesion-wise detail."""

    rows: list[dict[str, Any]]
    lesions: dict[str, LesionWiseScore] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSet:
    """Which metrics, with which parameters (see the module docstring)."""

    metrics: tuple[str, ...] = LEGACY_METRICS
    challenge: str | None = None
    empty_policy: str = "brats"
    nsd_tolerance_mm: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", check_metrics(self.metrics))
        get_policy(self.empty_policy)
        if self.challenge is not None:
            get_challenge(self.challenge)
        elif any(m in LESION_METRICS for m in self.metrics):
            raise ConfigError("lesion_dice and lesion_hd95 need a challenge (lesionwise: gli, ssa, ped, men, met or "
                              "gli2024) for their parameters")
        if not (isinstance(self.nsd_tolerance_mm, int | float) and self.nsd_tolerance_mm > 0):
            raise ConfigError(f"nsd_tolerance_mm must be > 0, got {self.nsd_tolerance_mm!r}")

    @property
    def challenge_params(self) -> Challenge | None:
        return None if self.challenge is None else get_challenge(self.challenge)

    @property
    def legacy(self) -> bool:
        """Whether this is volrob's original metric set (dice, hd95, nsd, no challenge)."""
        return self.metrics == LEGACY_METRICS and self.challenge is None

    def miss_mm(self, shape: Sequence[int], spacing: Sequence[float]) -> float:
        """``hd95_brats`` of a region present on one side only."""
        ch = self.challenge_params
        return ch.miss_penalty_mm if ch is not None else get_policy(self.empty_policy).missing_hd95(shape, spacing)

    def record(self) -> dict[str, Any]:
        """Every definition and parameter, as plain JSON values (run.json)."""
        ch = self.challenge_params
        return {"metrics": list(self.metrics), "definitions": {m: DEFINITIONS[m] for m in self.metrics},
                "hd_percentile": HD_PERCENTILE, "empty_policy": self.empty_policy,
                "empty_policy_hd95_mm": BRATS_HD95_MM if self.empty_policy == "brats" else "image diagonal",
                "nsd_tolerance_mm": self.nsd_tolerance_mm, "challenge": None if ch is None else ch.record()}

    def score(self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], regions: Sequence[str]
              ) -> ScoredCase:
        """Rows of every metric for boolean region stacks ``(R, D, H, W)`` named ``regions``."""
        p, g = as_mask(pred, "pred_regions", 4), as_mask(gt, "gt_regions", 4)
        names = list(regions)
        if p.shape != g.shape:
            raise ConfigError(f"pred_regions and gt_regions shapes differ: {list(p.shape)} vs {list(g.shape)}")
        if len(names) != p.shape[0] or len(set(names)) != len(names):
            raise ConfigError(f"regions {names} must be {p.shape[0]} distinct names, one per channel of the masks")
        sp = check_spacing(spacing, 3)
        out = ScoredCase([])
        for i, region in enumerate(names):
            values: dict[str, float] = {}
            if any(m in LEGACY_METRICS for m in self.metrics):
                values.update(region_metrics(p[i], g[i], sp, nsd_tolerance_mm=self.nsd_tolerance_mm,
                                             empty_policy=self.empty_policy))
            if "hd95_brats" in self.metrics:
                values["hd95_brats"] = hd_surface_elements(p[i], g[i], sp, miss_mm=self.miss_mm(p.shape[1:], sp))
            if any(m in LESION_METRICS for m in self.metrics):
                lw = lesion_wise(p[i], g[i], sp, self.challenge_params, region)  # type: ignore[arg-type]
                out.lesions[region] = lw
                values.update(lesion_dice=lw.dice, lesion_hd95=lw.hd95)
            out.rows.extend({"region": region, "metric": m, "value": float(values[m])} for m in self.metrics)
        return out


def resolve_metric_set(convention: str, metrics: Sequence[str] | str | None = None, challenge: str | None = None,
                       *, empty_policy: str = "brats", nsd_tolerance_mm: float = 1.0) -> MetricSet:
    """The metric set for data of label ``convention``: ``metrics`` and ``challenge`` when given, else the
    convention's defaults (a challenge given alone adds the lesion-wise metrics to the default list)."""
    default_metrics, default_challenge = DEFAULTS.get(convention, (LEGACY_METRICS, None))
    chosen = check_metrics(metrics) if metrics is not None else default_metrics
    if metrics is None and challenge is not None:
        chosen = tuple(dict.fromkeys([*chosen, *LESION_METRICS]))
    return MetricSet(chosen, challenge if challenge is not None else default_challenge, empty_policy,
                     nsd_tolerance_mm)
