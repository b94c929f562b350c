"""Mamba-style volumetric segmentation: a pure-PyTorch selective scan (S6), Mamba layers, U-Mamba-Bot."""

from volrob.models.mamba.block import DIRECTIONS, MambaLayer, ResidualMamba
from volrob.models.mamba.scan import selective_scan, selective_scan_ref
from volrob.models.mamba.segmenter import UMambaBot, build_umamba

__all__ = [
    "DIRECTIONS",
    "MambaLayer",
    "ResidualMamba",
    "UMambaBot",
    "build_umamba",
    "selective_scan",
    "selective_scan_ref",
]
