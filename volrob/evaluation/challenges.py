"""The parameters of the BraTS lesion-wise metrics, per challenge (the official BraTS 2023 and 2024 metrics code).

``dilation``: iterations of binary dilation (18-connected 3 x 3 x 3 structure) that merge nearby reference
components into one lesion and define the neighbourhood in which a predicted component counts as a hit;
``volume_threshold_mm3``: lesions whose volume is not above it are left out of the score; ``miss_penalty_mm``: the
HD95 of a missed lesion, of a false positive and (for ``hd95_brats``) of a region present on one side only.
Per-region overrides apply to the named regions only. ``merge_predictions`` (BraTS 2024 glioma): predicted components
are merged by dilation as the reference is, and merged predictions of at most the region's threshold in *voxels*
are removed before matching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from volrob.errors import ConfigError

CONNECTIVITY = 26
"""Voxel connectivity of lesions (components): face, edge and corner neighbours."""
DILATION_CONNECTIVITY = 18
"""The dilation's structuring element: the 3 x 3 x 3 cube without its 8 corners."""


@dataclass(frozen=True)
class Challenge:
    """One challenge's lesion-wise parameters (see the module docstring)."""

    name: str
    description: str
    dilation: int
    volume_threshold_mm3: float
    miss_penalty_mm: float
    region_dilation: dict[str, int] = field(default_factory=dict)
    region_threshold_mm3: dict[str, float] = field(default_factory=dict)
    merge_predictions: bool = False

    def dilation_for(self, region: str) -> int:
        return self.region_dilation.get(region, self.dilation)

    def threshold_for(self, region: str) -> float:
        return self.region_threshold_mm3.get(region, self.volume_threshold_mm3)

    def record(self) -> dict[str, Any]:
        """The parameters as plain JSON values (for run.json and CSV provenance)."""
        return {"name": self.name, "description": self.description, "dilation": self.dilation,
                "volume_threshold_mm3": self.volume_threshold_mm3, "miss_penalty_mm": self.miss_penalty_mm,
                "region_dilation": dict(self.region_dilation),
                "region_threshold_mm3": dict(self.region_threshold_mm3),
                "merge_predictions": self.merge_predictions, "connectivity": CONNECTIVITY,
                "dilation_connectivity": DILATION_CONNECTIVITY}


BRATS2023_PENALTY_MM = 374.0
BRATS2024_PENALTY_MM = 337.0

CHALLENGES: dict[str, Challenge] = {
    c.name: c
    for c in (
        Challenge("gli", "BraTS 2023 adult glioma", 3, 50.0, BRATS2023_PENALTY_MM),
        Challenge("ssa", "BraTS 2023 sub-Saharan Africa glioma", 3, 50.0, BRATS2023_PENALTY_MM),
        Challenge("ped", "BraTS 2023 paediatric tumours", 3, 50.0, BRATS2023_PENALTY_MM),
        Challenge("men", "BraTS 2023 meningioma", 1, 50.0, BRATS2023_PENALTY_MM),
        Challenge("met", "BraTS 2023 brain metastases", 1, 2.0, BRATS2023_PENALTY_MM),
        Challenge("gli2024", "BraTS 2024 post-treatment adult glioma", 3, 20.0, BRATS2024_PENALTY_MM,
                  region_dilation={"NETC": 5, "RC": 5}, region_threshold_mm3={"ET": 10.0},
                  merge_predictions=True),
    )
}


def get_challenge(name: str) -> Challenge:
    """A challenge by name (``gli``, ``ssa``, ``ped``, ``men``, ``met``, ``gli2024``)."""
    try:
        return CHALLENGES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown challenge {name!r}; choose one of {list(CHALLENGES)}") from None
