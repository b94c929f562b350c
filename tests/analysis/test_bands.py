"""Band masks, band filtering and band energies on the full-volume 3D DCT, checked against scipy and by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from volrob.analysis import band_energy, band_mask, filter_delta, frequency_radius, low_high, split_bands
from volrob.errors import ConfigError

SHAPES = st.tuples(*[st.integers(1, 7)] * 3)
INNER_EDGES = st.lists(st.floats(0.01, 0.99, allow_nan=False), max_size=4, unique=True).map(sorted)


def _delta(shape: tuple[int, ...], seed: int = 0, batch: int = 2, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *shape, generator=g, dtype=torch.float64)


def _radius_oracle(shape: tuple[int, int, int]) -> np.ndarray:
    k = np.indices(shape, dtype=np.float64)
    n = np.array(shape, dtype=np.float64).reshape(3, 1, 1, 1)
    return np.sqrt(((k / n) ** 2).sum(axis=0) / 3.0)


def _filter_oracle(delta: np.ndarray, mask: np.ndarray) -> np.ndarray:
    coeffs = scipy.fft.dctn(delta, type=2, norm="ortho", axes=(2, 3, 4))
    return scipy.fft.idctn(coeffs * mask, type=2, norm="ortho", axes=(2, 3, 4))


def test_radius_by_hand_on_a_tiny_shape() -> None:
    r = frequency_radius((2, 3, 4))
    assert r.shape == (2, 3, 4) and r.dtype == torch.float64
    assert r[0, 0, 0].item() == 0.0
    assert r[1, 0, 0].item() == pytest.approx(0.5 / math.sqrt(3), abs=1e-15)
    assert r[0, 2, 0].item() == pytest.approx((2 / 3) / math.sqrt(3), abs=1e-15)
    assert r[1, 2, 3].item() == pytest.approx(math.sqrt(0.5**2 + (2 / 3) ** 2 + 0.75**2) / math.sqrt(3), abs=1e-15)
    assert np.allclose(r.numpy(), _radius_oracle((2, 3, 4)), atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, inner=INNER_EDGES)
def test_split_bands_partition_the_coefficients(shape: tuple[int, int, int], inner: list[float]) -> None:
    edges = [0.0, *inner, 1.0]
    masks = split_bands(shape, edges)
    assert len(masks) == len(edges) - 1
    stacked = torch.stack(list(masks.values())).to(torch.int64)
    assert torch.equal(stacked.sum(dim=0), torch.ones(shape, dtype=torch.int64))  # disjoint and union = all
    r = _radius_oracle(shape)
    for (lo, hi), mask in zip(itertools.pairwise(edges), masks.values(), strict=True):
        expected = (r >= lo) & ((r < hi) if hi < 1 else (r <= 1))
        assert np.array_equal(mask.numpy(), expected)
        assert torch.equal(band_mask(shape, lo, hi), mask)


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, cutoff=st.floats(0.0, 1.0, allow_nan=False))
def test_low_high_are_complementary(shape: tuple[int, int, int], cutoff: float) -> None:
    low, high = low_high(shape, cutoff)
    assert not (low & high).any() and (low | high).all()
    assert np.array_equal(low.numpy(), _radius_oracle(shape) < cutoff if cutoff < 1 else np.ones(shape, bool))


def test_band_names_follow_the_edges() -> None:
    assert list(split_bands((4, 4, 4), [0, 0.1, 0.3, 1.0])) == ["0-0.1", "0.1-0.3", "0.3-1"]


def test_all_pass_filter_returns_delta() -> None:
    delta = _delta((5, 6, 7))
    everything = band_mask((5, 6, 7), 0.0, 1.0)
    assert everything.all()
    assert (filter_delta(delta, everything) - delta).abs().max().item() <= 1e-10


@pytest.mark.parametrize("cutoff", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_low_plus_high_is_delta(cutoff: float) -> None:
    delta = _delta((6, 5, 4), seed=1)
    low, high = low_high((6, 5, 4), cutoff)
    assert (filter_delta(delta, low) + filter_delta(delta, high) - delta).abs().max().item() <= 1e-10


def test_band_filter_matches_scipy() -> None:
    delta = _delta((6, 7, 5), seed=2)
    for mask in split_bands((6, 7, 5), [0, 0.15, 0.4, 1.0]).values():
        expected = _filter_oracle(delta.numpy(), mask.numpy())
        assert np.allclose(filter_delta(delta, mask).numpy(), expected, atol=1e-12)


def test_filter_keeps_float32_and_matches_scipy() -> None:
    delta = _delta((4, 5, 6), seed=3).float()
    mask = band_mask((4, 5, 6), 0.2, 0.6)
    out = filter_delta(delta, mask)
    assert out.dtype == torch.float32
    assert np.allclose(out.numpy(), _filter_oracle(delta.double().numpy(), mask.numpy()), atol=1e-5)


def test_band_energy_sums_to_one_and_obeys_parseval() -> None:
    delta = _delta((6, 6, 5), seed=4)
    masks = split_bands((6, 6, 5), [0, 0.1, 0.3, 0.6, 1.0])
    energy = band_energy(delta, masks)
    assert energy.shape == (2, 4)
    assert torch.allclose(energy.sum(dim=1), torch.ones(2, dtype=torch.float64), atol=1e-12)
    total = delta.square().sum(dim=(1, 2, 3, 4))
    for j, mask in enumerate(masks.values()):
        coeffs = scipy.fft.dctn(delta.numpy(), type=2, norm="ortho", axes=(2, 3, 4))
        by_coeffs = (coeffs**2 * mask.numpy()).sum(axis=(1, 2, 3, 4))
        by_filter = filter_delta(delta, mask).square().sum(dim=(1, 2, 3, 4))  # Parseval: band energy in space
        assert np.allclose(energy[:, j].numpy() * total.numpy(), by_coeffs, rtol=1e-10, atol=1e-12)
        assert torch.allclose(energy[:, j] * total, by_filter, rtol=1e-10, atol=1e-12)


def test_band_energy_accepts_a_sequence_and_gives_nan_for_zero_delta() -> None:
    low, high = low_high((4, 4, 4), 0.3)
    delta = torch.cat([_delta((4, 4, 4), batch=1), torch.zeros(1, 3, 4, 4, 4, dtype=torch.float64)])
    energy = band_energy(delta, [low, high])
    assert energy[0].sum().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.isnan(energy[1]).all()


def test_smooth_cosine_is_in_the_lowest_band_and_checkerboard_in_the_highest() -> None:
    n = 16
    i = torch.arange(n, dtype=torch.float64)
    cosine = torch.cos(math.pi * (2 * i + 1) / (2 * n))  # the k = 1 DCT basis vector along the depth axis
    smooth = cosine[:, None, None].expand(n, n, n)[None, None].clone()
    checker = ((-1.0) ** (i[:, None, None] + i[None, :, None] + i[None, None, :]))[None, None]
    masks = split_bands((n, n, n), [0, 0.1, 0.3, 1.0])
    smooth_energy = band_energy(smooth, masks)[0]
    checker_energy = band_energy(checker, masks)[0]
    assert smooth_energy[0].item() == pytest.approx(1.0, abs=1e-12)
    assert checker_energy[-1].item() > 0.99
    assert int(checker_energy.argmax()) == 2


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 4, 4), (0, 4, 4), (4, -1, 4), (4.5, 4, 4), (True, 4, 4), 4])
def test_bad_shapes(shape: object) -> None:
    with pytest.raises(ConfigError, match="shape") as err:
        band_mask(shape, 0.0, 0.5)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("low", "high", "word"), [
    (0.5, 0.5, "below"), (0.6, 0.2, "below"), (-0.1, 0.5, "low"), (0.0, 1.5, "high"),
    (float("nan"), 0.5, "low"), ("0", 0.5, "low"), (0.0, True, "high"),
])
def test_bad_band_limits(low: object, high: object, word: str) -> None:
    with pytest.raises(ConfigError, match=word) as err:
        band_mask((4, 4, 4), low, high)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("edges", [[0.1, 1.0], [0.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.0, 0.7, 0.3, 1.0], [0.0],
                                   [], [0.0, 2.0], 3, [0.0, "x", 1.0]])
def test_bad_edges(edges: object) -> None:
    with pytest.raises(ConfigError, match="edges") as err:
        split_bands((4, 4, 4), edges)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("cutoff", [-0.01, 1.01, float("nan"), None])
def test_bad_cutoff(cutoff: object) -> None:
    with pytest.raises(ConfigError, match="cutoff"):
        low_high((4, 4, 4), cutoff)  # type: ignore[arg-type]


def test_bad_filter_and_energy_inputs() -> None:
    mask = band_mask((4, 4, 4), 0.0, 0.5)
    delta = _delta((4, 4, 4))
    cases = [
        (lambda: filter_delta(delta[0], mask), "delta"),
        (lambda: filter_delta(delta.to(torch.int64), mask), "delta"),
        (lambda: filter_delta(delta.numpy(), mask), "delta"),
        (lambda: filter_delta(delta, mask[:3]), "mask shape"),
        (lambda: filter_delta(delta, mask.double()), "bool"),
        (lambda: band_energy(delta, []), "at least one"),
        (lambda: band_energy(delta, {"a": mask, "b": mask[:, :2]}), "mask shape"),
    ]
    for call, word in cases:
        with pytest.raises(ConfigError, match=word) as err:
            call()
        assert "\n" not in str(err.value)
