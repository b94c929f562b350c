"""Synthetic BraTS-like brain MRI with gliomas: the project's built-in data set.

``synthesize(dir, cases=N)`` writes BraTS-2021 case folders (T1, T1ce, T2, FLAIR, labels) and a manifest;
``generate_case(i, seed=s)`` returns one case in memory.
"""

from volrob.data.synth.case import SynthCase, case_affine, case_id, generate_case
from volrob.data.synth.generate import MIN_SIDE, assign_splits, check_options, split_counts, synthesize

__all__ = [
    "MIN_SIDE",
    "SynthCase",
    "assign_splits",
    "case_affine",
    "case_id",
    "check_options",
    "generate_case",
    "split_counts",
    "synthesize",
]
