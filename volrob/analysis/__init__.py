"""Analysis of perturbations: frequency bands and radial spectra on the full-volume 3D DCT."""

from volrob.analysis.bands import (
    band_energy,
    band_index,
    band_mask,
    band_name,
    filter_delta,
    frequency_radius,
    low_high,
    split_bands,
)
from volrob.analysis.spectrum import radial_spectrum, spectrum_table

__all__ = [
    "band_energy",
    "band_index",
    "band_mask",
    "band_name",
    "filter_delta",
    "frequency_radius",
    "low_high",
    "radial_spectrum",
    "spectrum_table",
    "split_bands",
]
