"""Radial DCT spectrum and its tidy table, checked against a scipy reference written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from volrob.analysis import band_energy, radial_spectrum, spectrum_table, split_bands
from volrob.errors import ConfigError


def _delta(shape: tuple[int, ...], seed: int = 0, batch: int = 2, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *shape, generator=g, dtype=torch.float64)


def _spectrum_oracle(delta: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin energy (channel mean) and coefficient counts by an explicit loop over coefficients."""
    coeffs = scipy.fft.dctn(delta, type=2, norm="ortho", axes=(2, 3, 4))
    shape = delta.shape[2:]
    energy = np.zeros((delta.shape[0], bins))
    counts = np.zeros(bins)
    for k in np.ndindex(*shape):
        r = math.sqrt(sum((ki / ni) ** 2 for ki, ni in zip(k, shape, strict=True))) / math.sqrt(3)
        b = sum(1 for i in range(1, bins) if r >= i / bins)
        energy[:, b] += (coeffs[(slice(None), slice(None), *k)] ** 2).mean(axis=1)
        counts[b] += 1
    return energy, counts


@pytest.mark.parametrize(("shape", "bins"), [((5, 6, 7), 8), ((4, 4, 4), 3), ((1, 3, 2), 5)])
def test_radial_spectrum_matches_reference(shape: tuple[int, int, int], bins: int) -> None:
    delta = _delta(shape, seed=bins)
    centres, values = radial_spectrum(delta, bins)
    energy, counts = _spectrum_oracle(delta.numpy(), bins)
    assert np.allclose(centres.numpy(), (np.arange(bins) + 0.5) / bins)
    assert values.shape == (2, bins)
    assert np.allclose(values.numpy(), energy, rtol=1e-10, atol=1e-12)
    _, density = radial_spectrum(delta, bins, density=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(counts > 0, energy / counts, np.nan)
    assert np.allclose(density.numpy(), expected, rtol=1e-10, atol=1e-12, equal_nan=True)


def test_spectrum_total_is_parseval_and_matches_band_energy() -> None:
    delta = _delta((6, 5, 7), seed=5)
    _, values = radial_spectrum(delta, 4)
    channel_mean_energy = delta.square().sum(dim=(2, 3, 4)).mean(dim=1)
    assert torch.allclose(values.sum(dim=1), channel_mean_energy, rtol=1e-10)
    fractions = band_energy(delta, split_bands((6, 5, 7), [0, 0.25, 0.5, 0.75, 1.0]))
    assert torch.allclose(values / values.sum(dim=1, keepdim=True), fractions, atol=1e-12)


def test_float32_input_gives_float64_spectrum() -> None:
    delta = _delta((4, 4, 4), seed=6)
    _, v64 = radial_spectrum(delta, 4)
    _, v32 = radial_spectrum(delta.float(), 4)
    assert v32.dtype == torch.float64
    assert torch.allclose(v32, v64, rtol=1e-5)


def test_cosine_peaks_low_and_checkerboard_high() -> None:
    n = 12
    i = torch.arange(n, dtype=torch.float64)
    smooth = torch.cos(math.pi * (2 * i + 1) / (2 * n))[None, :, None].expand(n, n, n)[None, None].clone()
    checker = ((-1.0) ** (i[:, None, None] + i[None, :, None] + i[None, None, :]))[None, None]
    _, s = radial_spectrum(smooth, 10)
    _, c = radial_spectrum(checker, 10)
    assert s[0, 0].item() == pytest.approx(s.sum().item(), rel=1e-12)
    assert int(c[0].argmax()) == 9


def test_spectrum_table_is_tidy_and_normalised() -> None:
    deltas = {"pgd": _delta((4, 5, 6), seed=7), "vafa": _delta((4, 5, 6), seed=8, batch=3, channels=1)}
    table = spectrum_table(deltas, bins=5)
    assert list(table.columns) == ["name", "sample", "bin_lo", "bin_hi", "energy_fraction"]
    assert len(table) == (2 + 3) * 5
    sums = table.groupby(["name", "sample"])["energy_fraction"].sum()
    assert np.allclose(sums.to_numpy(), 1.0, atol=1e-12)
    for name, delta in deltas.items():
        _, values = radial_spectrum(delta, 5)
        expected = (values / values.sum(dim=1, keepdim=True)).numpy()
        rows = table[table["name"] == name].sort_values(["sample", "bin_lo"])
        assert np.allclose(rows["energy_fraction"].to_numpy().reshape(expected.shape), expected, atol=1e-12)
        assert np.allclose(rows["bin_hi"] - rows["bin_lo"], 0.2)


def test_spectrum_table_zero_perturbation_is_nan() -> None:
    table = spectrum_table({"zero": torch.zeros(1, 1, 3, 3, 3)}, bins=2)
    assert table["energy_fraction"].isna().all()


@pytest.mark.parametrize("bins", [0, -2, 2.5, True, "4"])
def test_bad_bins(bins: object) -> None:
    with pytest.raises(ConfigError, match="bins") as err:
        radial_spectrum(_delta((3, 3, 3)), bins)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_bad_spectrum_inputs() -> None:
    good = _delta((3, 3, 3))
    cases = [
        (lambda: radial_spectrum(good[0]), "delta"),
        (lambda: radial_spectrum(good.to(torch.int32)), "delta"),
        (lambda: spectrum_table({}), "non-empty"),
        (lambda: spectrum_table([good]), "mapping"),  # type: ignore[arg-type]
        (lambda: spectrum_table({"": good}), "names"),
        (lambda: spectrum_table({3: good}), "names"),  # type: ignore[dict-item]
        (lambda: spectrum_table({"a": good[0]}), "delta"),
    ]
    for call, word in cases:
        with pytest.raises(ConfigError, match=word) as err:
            call()
        assert "\n" not in str(err.value)
