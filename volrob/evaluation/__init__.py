"""Evaluation: segmentation metrics (Dice, HD95 in both definitions, NSD, BraTS lesion-wise scores) with a
documented empty-case policy, the metric set a run scores with, statistics (SSIM is in :mod:`volrob.signal.ssim`)."""

from volrob.evaluation.challenges import CHALLENGES, Challenge, get_challenge
from volrob.evaluation.empty_policy import BRATS_HD95_MM, POLICIES, EmptyPolicy, get_policy, image_diagonal_mm
from volrob.evaluation.lesionwise import Lesion, LesionWiseScore, lesion_wise
from volrob.evaluation.metric_set import METRICS, MetricSet, ScoredCase, resolve_metric_set
from volrob.evaluation.metrics import METRIC_NAMES, case_metrics, dice, hd95, nsd, region_metrics
from volrob.evaluation.summary import (
    WilcoxonResult,
    bootstrap_mean_ci,
    format_summary,
    paired_wilcoxon,
    summarize,
)
from volrob.evaluation.surface import percentile_hausdorff, surface_dice, surface_distances, surface_voxels
from volrob.evaluation.surface_elements import hd_surface_elements, surface_element_distances

__all__ = [
    "BRATS_HD95_MM",
    "CHALLENGES",
    "METRICS",
    "METRIC_NAMES",
    "POLICIES",
    "Challenge",
    "EmptyPolicy",
    "Lesion",
    "LesionWiseScore",
    "MetricSet",
    "ScoredCase",
    "WilcoxonResult",
    "bootstrap_mean_ci",
    "case_metrics",
    "dice",
    "format_summary",
    "get_challenge",
    "get_policy",
    "hd95",
    "hd_surface_elements",
    "image_diagonal_mm",
    "lesion_wise",
    "nsd",
    "paired_wilcoxon",
    "percentile_hausdorff",
    "region_metrics",
    "resolve_metric_set",
    "summarize",
    "surface_dice",
    "surface_distances",
    "surface_element_distances",
    "surface_voxels",
]
