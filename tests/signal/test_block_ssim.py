"""Per-block SSIM against an independent oracle (explicit loops over blocks, a direct 3D/2D window and the SSIM
formula in numpy), its reference class's value and gradient, properties and bad options."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from volrob.errors import ConfigError
from volrob.signal.ssim import BlockSSIMReference, block_ssim, ssim


def _kernel(size: int, k: int, window: str, sigma: float = 1.5) -> np.ndarray:
    """The normalised ``k``-D window, written from its definition (not separable filtering)."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2)) if window == "gaussian" else np.ones(size)
    w = g
    for _ in range(k - 1):
        w = np.multiply.outer(w, g)
    return w / w.sum()


def _block_value(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    """Mean SSIM map of one block (every position where the window fits), data range 1."""
    k = w.ndim
    axes = tuple(range(-k, 0))
    wa, wb = sliding_window_view(a, w.shape), sliding_window_view(b, w.shape)

    def mean(t: np.ndarray) -> np.ndarray:
        return (t * w).sum(axis=axes)

    ma, mb = mean(wa), mean(wb)
    va, vb, cab = mean(wa * wa) - ma**2, mean(wb * wb) - mb**2, mean(wa * wb) - ma * mb
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * ma * mb + c1) * (2 * cab + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return float(s.mean())


def _oracle(x: torch.Tensor, y: torch.Tensor, block: tuple[int, ...], size: int, window: str = "gaussian",
            nonnegative: bool = True) -> np.ndarray:
    """Per sample: loop over every unfiltered index and every block from the origin; blocks shorter than the
    window are skipped; each block's mean SSIM (clamped at 0 if asked) weighs the same."""
    k = len(block)
    xs, ys = x.numpy(), y.numpy()
    w = _kernel(size, k, window)
    out = []
    for i in range(xs.shape[0]):
        values = []
        for lead in itertools.product(*(range(n) for n in xs.shape[1:-k])):
            a, b = xs[(i, *lead)], ys[(i, *lead)]
            starts = [range(0, n, s) for n, s in zip(a.shape, block, strict=True)]
            for corner in itertools.product(*starts):
                index = tuple(slice(c, min(c + s, n)) for c, s, n in zip(corner, block, a.shape, strict=True))
                if any(sl.stop - sl.start < size for sl in index):
                    continue
                v = _block_value(a[index], b[index], w)
                values.append(max(v, 0.0) if nonnegative else v)
        out.append(sum(values) / len(values))
    return np.array(out)


def _pair(shape: tuple[int, ...], seed: int = 0, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g, dtype=torch.float64)
    return x, (x + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)


@pytest.mark.parametrize(("shape", "block", "size", "window", "dims"), [
    ((2, 2, 8, 8, 8), (4, 4, 4), 3, "gaussian", 3),  # divisible, as the published code needs
    ((2, 1, 13, 11, 9), (5, 4, 6), 3, "gaussian", 3),  # ragged: short last blocks kept (>= 3) or left out (< 3)
    ((1, 2, 12, 10, 11), (6, 5, 5), 5, "uniform", 3),
    ((1, 2, 3, 10, 9), (4, 4), 3, "gaussian", 2),  # per-slice blocks: D is not filtered
])
def test_matches_block_loop_oracle(shape: tuple[int, ...], block: tuple[int, ...], size: int, window: str,
                                   dims: int) -> None:
    x, y = _pair(shape)
    got = block_ssim(x, y, block=list(block), size=size, window=window, spatial_dims=dims)
    assert np.allclose(got.numpy(), _oracle(x, y, block, size, window), atol=1e-12)
    ref = BlockSSIMReference(y, block=list(block), size=size, window=window, spatial_dims=dims, chunk=50)
    assert np.allclose(ref(x).numpy(), got.numpy(), atol=1e-12)


def test_nonnegative_clamps_each_block() -> None:
    x, _ = _pair((1, 1, 8, 8, 8), seed=1)
    y = 1 - x  # anti-correlated: every block's SSIM is negative
    raw = block_ssim(x, y, block=4, nonnegative=False)
    assert float(raw) < 0 and np.allclose(raw.numpy(), _oracle(x, y, (4, 4, 4), 3, nonnegative=False), atol=1e-12)
    assert float(block_ssim(x, y, block=4)) == 0.0


def test_one_block_is_the_volume_ssim() -> None:
    x, y = _pair((2, 3, 7, 9, 8), seed=2)
    whole = block_ssim(x, y, block=[7, 9, 8], size=5, nonnegative=False)
    assert torch.allclose(whole, ssim(x, y, size=5), atol=1e-13)


def test_properties() -> None:
    x, y = _pair((3, 2, 9, 8, 10), seed=3)
    x0, y0 = x.clone(), y.clone()
    s = block_ssim(x, y, block=4)
    assert torch.equal(x, x0) and torch.equal(y, y0)  # inputs untouched
    assert torch.allclose(block_ssim(x, x, block=4), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(s, block_ssim(y, x, block=4), atol=1e-14)
    assert bool((s > 0).all()) and bool((s < 1).all())
    assert torch.allclose(block_ssim(x[1:2], y[1:2], block=4), s[1:2], atol=1e-14)  # batch consistency
    closer = block_ssim(x, (x + 0.3 * (y - x)), block=4)
    assert bool((closer > s).all())


def test_reference_gradient_matches_autograd_and_chunks() -> None:
    x, y = _pair((2, 2, 11, 9, 10), seed=4, noise=0.3)
    xr = x.clone().requires_grad_(True)
    block_ssim(xr, y, block=[4, 5, 4]).sum().backward()
    assert xr.grad is not None and float(xr.grad.abs().max()) > 0
    for chunk in (1, 37, 1 << 21):  # one block at a time, a ragged chunk, everything at once
        ref = BlockSSIMReference(y, block=[4, 5, 4], chunk=chunk)
        value, grad = ref.value_and_grad(x)
        assert grad is not None and torch.allclose(grad, xr.grad, atol=1e-14)
        assert torch.allclose(value, block_ssim(x, y, block=[4, 5, 4]), atol=1e-14)
    # a short last block (length 1 < window 3 along H) gets no gradient; voxels of kept blocks do
    assert float(xr.grad[:, :, :, 5:].abs().max()) > 0
    ref = BlockSSIMReference(y, block=[5, 4, 4])
    assert torch.equal(ref.value_and_grad(x)[1][:, :, 10:], torch.zeros_like(x[:, :, 10:]))
    assert ref.value_and_grad(x, need_grad=False)[1] is None


def test_reference_gradcheck() -> None:
    x, y = _pair((1, 1, 6, 5, 7), seed=5, noise=0.2)
    ref = BlockSSIMReference(y, block=[3, 5, 4], chunk=40)
    assert torch.autograd.gradcheck(lambda t: ref(t), (x.clone().requires_grad_(True),))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"block": 2}, "block"), ({"block": [4, 4]}, "block"), ({"block": True}, "block"), ({"block": 4.0}, "block"),
    ({"block": 4, "size": 4}, "odd"), ({"block": 4, "window": "box"}, "window"),
])
def test_bad_options(kwargs: dict, match: str) -> None:
    x, y = _pair((1, 1, 8, 8, 8))
    with pytest.raises(ConfigError, match=match) as err:
        block_ssim(x, y, **kwargs)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=match):
        BlockSSIMReference(y, **kwargs)
    with pytest.raises(ConfigError, match="chunk"):
        BlockSSIMReference(y, block=4, chunk=0)
    with pytest.raises(ConfigError, match="match"):
        BlockSSIMReference(y, block=4)(x[:, :, :7])
    assert math.isfinite(float(block_ssim(x, y, block=8)))
