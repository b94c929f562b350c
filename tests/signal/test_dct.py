"""Block and whole-axis DCT against scipy and torch-dct; inverse, Parseval, gradients, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
import torch
import torch_dct
from hypothesis import given, settings
from hypothesis import strategies as st

from volrob.errors import ConfigError
from volrob.signal.dct import block_dct, block_idct, dct_matrix, dct_nd, idct_nd


def _rand(shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _scipy_block_dct(x: np.ndarray, block: int, axes: tuple[int, ...]) -> np.ndarray:
    """Independent oracle: scipy dctn on every (possibly ragged) block."""
    out = np.empty_like(x)
    ranges = [[(s, min(s + block, x.shape[a])) for s in range(0, x.shape[a], block)] for a in axes]
    for combo in np.ndindex(*[len(r) for r in ranges]):
        index: list[slice] = [slice(None)] * x.ndim
        for a, r, c in zip(axes, ranges, combo, strict=True):
            index[a] = slice(*r[c])
        out[tuple(index)] = sfft.dctn(x[tuple(index)], type=2, norm="ortho", axes=axes)
    return out


def test_matrix_is_orthonormal_and_cached() -> None:
    c = dct_matrix(8, dtype=torch.float64)
    assert torch.allclose(c @ c.T, torch.eye(8, dtype=torch.float64), atol=1e-14)
    assert dct_matrix(8, dtype=torch.float64) is c
    assert np.allclose(c.numpy(), sfft.dct(np.eye(8), type=2, norm="ortho", axis=0), atol=1e-14)


def test_whole_volume_matches_scipy() -> None:
    x = _rand((2, 3, 12, 10, 9))
    ref = sfft.dctn(x.numpy(), type=2, norm="ortho", axes=(2, 3, 4))
    assert np.abs(dct_nd(x, (2, 3, 4)).numpy() - ref).max() <= 1e-10
    back = sfft.idctn(ref, type=2, norm="ortho", axes=(2, 3, 4))
    assert np.abs(idct_nd(torch.from_numpy(ref), (2, 3, 4)).numpy() - back).max() <= 1e-10


@pytest.mark.parametrize(("shape", "block", "dims"), [
    ((1, 2, 16, 16, 16), 8, (2, 3, 4)),
    ((2, 1, 10, 13, 7), 4, (2, 3, 4)),
    ((1, 2, 5, 12, 11), 8, (3, 4)),
])
def test_blocks_match_scipy_per_block(shape: tuple[int, ...], block: int, dims: tuple[int, ...]) -> None:
    x = _rand(shape, seed=1)
    ref = _scipy_block_dct(x.numpy(), block, dims)
    assert np.abs(block_dct(x, block, dims).numpy() - ref).max() <= 1e-10


@pytest.mark.parametrize("dims", [None, (3, 4)])
def test_matches_torch_dct_backend(dims: tuple[int, ...] | None) -> None:
    x = _rand((1, 2, 16, 24, 20), seed=2)
    a = block_dct(x, 8, dims)
    b = block_dct(x, 8, dims, backend="torch_dct")
    assert torch.allclose(a, b, atol=1e-10)
    whole = torch_dct.dct_3d(x, norm="ortho")
    assert torch.allclose(dct_nd(x, (2, 3, 4)), whole, atol=1e-10)
    assert torch.allclose(block_idct(b, 8, dims, backend="torch_dct"), x, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 11), h=st.integers(1, 11), w=st.integers(1, 11), block=st.integers(1, 6),
       seed=st.integers(0, 1000))
def test_inverse_and_parseval(d: int, h: int, w: int, block: int, seed: int) -> None:
    x64 = _rand((1, 2, d, h, w), seed=seed)
    y64 = block_dct(x64, block)
    assert (block_idct(y64, block) - x64).abs().max() <= 1e-12
    assert abs(float(y64.square().sum() - x64.square().sum())) <= 1e-10 * float(x64.square().sum()) + 1e-12
    x32 = x64.float()
    assert (block_idct(block_dct(x32, block, (3, 4)), block, (3, 4)) - x32).abs().max() <= 1e-6


def test_per_axis_block_sizes() -> None:
    x = _rand((1, 1, 8, 6, 4), seed=3)
    y = block_dct(x, (4, 3, 2))
    assert torch.allclose(block_idct(y, (4, 3, 2)), x, atol=1e-12)
    assert torch.allclose(y[..., :4, :3, :2], dct_nd(x[..., :4, :3, :2], (2, 3, 4)), atol=1e-12)


def test_gradcheck() -> None:
    x = _rand((1, 1, 5, 4, 3), seed=4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: block_dct(t, 2), (x,))
    assert torch.autograd.gradcheck(lambda t: block_idct(t, 3, (3, 4)), (x,))
    assert torch.autograd.gradcheck(lambda t: dct_nd(t, (2, 4)), (x,))


@pytest.mark.parametrize(("call", "match"), [
    (lambda x: block_dct(x, 0), "block"),
    (lambda x: block_dct(x, -2), "block"),
    (lambda x: block_dct(x, (2, 2)), "one size per"),
    (lambda x: block_dct(x[0], 2), "B, C, D, H, W"),
    (lambda x: block_dct(x, 2, (3, 3)), "distinct"),
    (lambda x: block_dct(x, 2, (7,)), "out of range"),
    (lambda x: block_dct(x, 2, ()), "at least one"),
    (lambda x: block_dct(x, 2, backend="fft"), "backend"),
    (lambda x: block_dct(x.long(), 2), "floating"),
    (lambda x: dct_matrix(0), "positive"),
])
def test_bad_inputs(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=match) as err:
        call(_rand((1, 1, 4, 4, 4)))
    assert "\n" not in str(err.value)
