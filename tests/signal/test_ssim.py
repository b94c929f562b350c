"""SSIM against an independent scipy.ndimage oracle, plus its properties and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from volrob.errors import ConfigError
from volrob.signal.ssim import SSIMReference, ssim, ssim_map, window_1d


def _oracle(x: np.ndarray, y: np.ndarray, w: np.ndarray, axes: tuple[int, ...], data_range: float) -> np.ndarray:
    """SSIM per sample with scipy filters, cropped to where the window fits."""
    r = len(w) // 2

    def filt(a: np.ndarray) -> np.ndarray:
        for ax in axes:
            a = ndimage.correlate1d(a, w, axis=ax, mode="reflect")
        index = [slice(None)] * a.ndim
        for ax in axes:
            index[ax] = slice(r, a.shape[ax] - r)
        return a[tuple(index)]

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.reshape(s.shape[0], -1).mean(axis=1)


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 2, 12, 11, 10, generator=g, dtype=torch.float64)
    return x, (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)


@pytest.mark.parametrize(("window", "size", "dims"), [("gaussian", 7, 3), ("uniform", 5, 3), ("gaussian", 3, 2),
                                                      ("uniform", 7, 2)])
def test_matches_scipy_oracle(window: str, size: int, dims: int) -> None:
    x, y = _pair()
    w = window_1d(size, kind=window, dtype=torch.float64).numpy()
    axes = (2, 3, 4) if dims == 3 else (3, 4)
    ref = _oracle(x.numpy(), y.numpy(), w, axes, 1.0)
    got = ssim(x, y, window=window, size=size, spatial_dims=dims)
    assert np.allclose(got.numpy(), ref, atol=1e-12)


def test_properties() -> None:
    x, y = _pair(1)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(ssim(x, y), ssim(y, x))
    s_small = ssim(x, (x + 0.02).clamp(0, 1))
    assert bool((ssim(x, y) < s_small).all()) and bool((s_small < 1).all())
    m = ssim_map(x, y)
    assert m.shape == (2, 2, 6, 5, 4) and float(m.abs().max()) <= 1.0
    assert torch.allclose(ssim(x[1:], y[1:]), ssim(x, y)[1:])


def test_window_sums_to_one_and_is_symmetric() -> None:
    w = window_1d(7, sigma=1.5, dtype=torch.float64)
    assert abs(float(w.sum()) - 1) < 1e-14 and torch.equal(w, w.flip(0))


def test_differentiable() -> None:
    x, y = _pair(2)
    x = x[:1, :1, :8, :8, :8].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ssim(t, y[:1, :1, :8, :8, :8], size=3), (x,))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"size": 4}, "odd"), ({"size": 0}, "odd"), ({"window": "box"}, "window"), ({"sigma": 0.0}, "sigma"),
    ({"spatial_dims": 1}, "spatial_dims"), ({"data_range": 0.0}, "data_range"), ({"size": 15}, "larger"),
])
def test_bad_options(kwargs: dict, match: str) -> None:
    x, y = _pair()
    with pytest.raises(ConfigError, match=match) as err:
        ssim(x, y, **kwargs)
    assert "\n" not in str(err.value)


def test_bad_shapes() -> None:
    x, y = _pair()
    with pytest.raises(ConfigError, match="same shape"):
        ssim(x, y[:1])
    with pytest.raises(ConfigError, match="spatial axes"):
        ssim(x[0, 0], y[0, 0])
    with pytest.raises(ConfigError, match="floating"):
        ssim(x.long(), y.long())


@pytest.mark.parametrize(("window", "size", "dims", "data_range"), [("gaussian", 7, 3, 1.0), ("uniform", 3, 2, 2.0),
                                                                    ("gaussian", 5, 2, 0.5)])
def test_reference_matches_ssim_value_and_gradient(window: str, size: int, dims: int, data_range: float) -> None:
    ref, x = _pair(4)
    x = x.clone().requires_grad_(True)
    opts = {"window": window, "size": size, "spatial_dims": dims, "data_range": data_range}
    reference = SSIMReference(ref, **opts)  # type: ignore[arg-type]
    value, plain = reference(x), ssim(x, ref, **opts)  # type: ignore[arg-type]
    assert float((value - plain).detach().abs().max()) <= 1e-12
    assert np.allclose(value.detach().numpy(), _oracle(x.detach().numpy(), ref.numpy(), window_1d(
        size, kind=window).double().numpy(), tuple(range(5 - dims, 5)), data_range), atol=1e-10)
    weights = torch.tensor([0.7, -1.3], dtype=torch.float64)
    (grad,) = torch.autograd.grad((value * weights).sum(), x)
    (expected,) = torch.autograd.grad((plain * weights).sum(), x, retain_graph=True)
    (expected_sum,) = torch.autograd.grad(plain.sum(), x)
    assert float(expected.abs().max()) > 0 and float((grad - expected).abs().max()) <= 1e-12
    small = x.detach()[:1, :1, :8, :8, :8].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(SSIMReference(ref[:1, :1, :8, :8, :8], **opts), (small,))  # type: ignore[arg-type]
    assert reference.value_and_grad(x, need_grad=False)[1] is None
    for slabs in (1, 4, 100):  # slab-wise evaluation (ragged last slab for 4) gives the same value and gradient
        value_s, grad_s = reference.value_and_grad(x, slabs=slabs)
        assert grad_s is not None and float((value_s - plain).detach().abs().max()) <= 1e-12
        assert float((grad_s - expected_sum).abs().max()) <= 1e-12
    assert float(SSIMReference(ref)(ref).min()) == pytest.approx(1.0, abs=1e-12)


def test_reference_bad_inputs() -> None:
    x, y = _pair()
    with pytest.raises(ConfigError, match="does not match") as err:
        SSIMReference(x)(y[:1])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="does not match"):
        SSIMReference(x)(y.float())
    with pytest.raises(ConfigError, match="odd"):
        SSIMReference(x, size=4)
    for slabs in (0, 2.5, True):
        with pytest.raises(ConfigError, match="slabs"):
            SSIMReference(x).value_and_grad(x, slabs=slabs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="floating"):
        SSIMReference(x.long())
