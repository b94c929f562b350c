"""Evaluation: segmentation metrics (Dice, HD95, NSD) with a documented empty-case policy, statistics (SSIM is in
:mod:`volrob.signal.ssim`)."""

from volrob.evaluation.empty_policy import BRATS_HD95_MM, POLICIES, EmptyPolicy, get_policy, image_diagonal_mm
from volrob.evaluation.metrics import METRIC_NAMES, case_metrics, dice, hd95, nsd, region_metrics
from volrob.evaluation.summary import (
    WilcoxonResult,
    bootstrap_mean_ci,
    format_summary,
    paired_wilcoxon,
    summarize,
)
from volrob.evaluation.surface import percentile_hausdorff, surface_dice, surface_distances, surface_voxels

__all__ = [
    "BRATS_HD95_MM",
    "METRIC_NAMES",
    "POLICIES",
    "EmptyPolicy",
    "WilcoxonResult",
    "bootstrap_mean_ci",
    "case_metrics",
    "dice",
    "format_summary",
    "get_policy",
    "hd95",
    "image_diagonal_mm",
    "nsd",
    "paired_wilcoxon",
    "percentile_hausdorff",
    "region_metrics",
    "summarize",
    "surface_dice",
    "surface_distances",
    "surface_voxels",
]
