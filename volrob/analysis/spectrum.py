"""Radial DCT power spectrum of a perturbation: energy per normalised-radius bin (see :mod:`volrob.analysis.bands`).

Bins are ``bins`` equal-width intervals ``[i/bins, (i+1)/bins)`` of the radius ``r`` (the last one includes 1),
cut with the same rule as the band masks, so a bin's energy equals :func:`~volrob.analysis.bands.band_energy` of
the matching band.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Mapping

import pandas as pd
import torch

from volrob.analysis.bands import SPATIAL_DIMS, band_index
from volrob.errors import ConfigError
from volrob.signal.dct import dct_nd

TABLE_COLUMNS: tuple[str, ...] = ("name", "sample", "bin_lo", "bin_hi", "energy_fraction")


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ConfigError(f"spectrum: bins must be a positive integer, got {bins!r}")
    return int(bins)


def bin_edges(bins: int) -> list[float]:
    """The ``bins + 1`` equal-width edges ``i / bins`` from 0 to 1."""
    n = _check_bins(bins)
    return [i / n for i in range(n + 1)]


def radial_spectrum(delta: torch.Tensor, bins: int = 16, *,
                    density: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin centres ``(bins,)`` and spectrum ``(B, bins)`` of ``delta`` (B, C, D, H, W), float64.

    ``values[b, i]`` is the sum of squared DCT coefficients of sample ``b`` with radius in bin ``i``, averaged over
    channels. With ``density=True`` it is divided by the number of coefficients in the bin (mean power per
    coefficient, the radially averaged power spectrum); a bin with no coefficients is then NaN.
    """
    if not isinstance(delta, torch.Tensor) or not delta.is_floating_point() or delta.ndim != 5:
        got = f"{delta.ndim}-D {delta.dtype}" if isinstance(delta, torch.Tensor) else type(delta).__name__
        raise ConfigError(f"spectrum: delta must be a floating-point (B, C, D, H, W) tensor, got {got}")
    edges = bin_edges(bins)
    index = band_index(tuple(delta.shape[2:]), edges, device=delta.device).flatten()
    power = dct_nd(delta.to(torch.float64), SPATIAL_DIMS).square().mean(dim=1).flatten(1)
    values = torch.zeros(power.shape[0], len(edges) - 1, dtype=torch.float64, device=delta.device)
    values.index_add_(1, index, power)
    if density:
        counts = torch.bincount(index, minlength=len(edges) - 1).to(torch.float64)
        values = torch.where(counts > 0, values / counts.clamp_min(1.0), torch.full_like(values, float("nan")))
    centres = torch.tensor([(lo + hi) / 2 for lo, hi in itertools.pairwise(edges)], dtype=torch.float64)
    return centres, values.cpu()


def spectrum_table(deltas: Mapping[str, torch.Tensor], bins: int = 16) -> pd.DataFrame:
    """Tidy rows ``(name, sample, bin_lo, bin_hi, energy_fraction)``: each sample's energy share per radius bin.

    A sample with zero energy has NaN fractions (undefined), never a made-up distribution.
    """
    if not isinstance(deltas, Mapping) or not deltas:
        raise ConfigError("spectrum: deltas must be a non-empty mapping of name -> perturbation")
    edges = bin_edges(bins)
    rows: list[dict[str, object]] = []
    for name, delta in deltas.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"spectrum: perturbation names must be non-empty strings, got {name!r}")
        _, values = radial_spectrum(delta, bins)
        total = values.sum(dim=1, keepdim=True)
        fractions = torch.where(total > 0, values / total.clamp_min(torch.finfo(torch.float64).tiny),
                                torch.full_like(values, float("nan")))
        for sample in range(fractions.shape[0]):
            for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
                rows.append({"name": name, "sample": sample, "bin_lo": lo, "bin_hi": hi,
                             "energy_fraction": float(fractions[sample, i])})
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
