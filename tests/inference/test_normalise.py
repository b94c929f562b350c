"""The network's input normalisation: fixed constants and the per-case z-score, against numpy oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from volrob.errors import ConfigError
from volrob.inference.normalise import FixedNorm, ZScoreNorm


def _volume(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 6, 7, 5, generator=g)
    x[:, :, :2] = 0  # background slab, zero in every channel
    x[0, 1, 3, 3, 3] = 0  # a brain voxel that is zero in one channel only
    return x


def _oracle(x: np.ndarray, mask: str, min_std: float = 1e-8) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float64)
    for b in range(x.shape[0]):
        anym = (x[b] != 0).any(0)
        for c in range(x.shape[1]):
            m = anym if mask == "any" else x[b, c] != 0
            vals = x[b, c][m].astype(np.float64)
            if vals.size:
                out[b, c][m] = (vals - vals.mean()) / max(vals.std(), min_std)
    return out


@pytest.mark.parametrize("mask", ["any", "channel"])
def test_zscore_matches_numpy(mask: str) -> None:
    x = _volume()
    got = ZScoreNorm(3, mask=mask)(x).numpy()
    np.testing.assert_allclose(got, _oracle(x.numpy(), mask), atol=1e-5)


def test_zscore_invariant_to_positive_affine_scaling() -> None:
    """What lets the [0, 1] attack space feed a z-scoring network exactly: scale and shift of the non-zero voxels do
    not change its input."""
    x = _volume(1)
    scaled = torch.where(x != 0, x * torch.tensor([3.0, 0.5, 7.0]).view(1, 3, 1, 1, 1) + 0.25, x)
    norm = ZScoreNorm(3, mask="channel")
    torch.testing.assert_close(norm(scaled), norm(x), atol=2e-5, rtol=0)


def test_zscore_gradient_and_constant_channel() -> None:
    x = _volume(2).double()
    x[1, 2][x[1, 2] != 0] = 0.5  # constant channel: std 0 -> min_std, finite gradient
    x.requires_grad_(True)
    norm = ZScoreNorm(3, mask="any")
    out = norm(x)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    y = _volume(3).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ZScoreNorm(3, mask="channel")(t), (y[:1, :, 2:4, :3, :3],))


def test_zscore_keeps_outside_zero_and_input_untouched() -> None:
    x = _volume(4)
    before = x.clone()
    out = ZScoreNorm(3)(x)
    assert (out[:, :, :2] == 0).all()
    assert torch.equal(x, before)


def test_fixed_norm_and_records() -> None:
    x = _volume(5)
    norm = FixedNorm([0.1, 0.2, 0.3], [1.0, 2.0, 4.0])
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1, 1)) / torch.tensor([1.0, 2.0, 4.0]).view(
        1, 3, 1, 1, 1)
    torch.testing.assert_close(norm(x), expected)
    assert norm.record() == {"kind": "fixed", "mean": pytest.approx([0.1, 0.2, 0.3]), "std": [1.0, 2.0, 4.0]}
    assert ZScoreNorm(3, mask="channel").record() == {"kind": "zscore", "mask": "channel", "min_std": 1e-8}
    assert norm.pointwise and not ZScoreNorm(3).pointwise


@pytest.mark.parametrize("make", [
    lambda: FixedNorm([0.0, 0.0], [1.0]),
    lambda: FixedNorm([0.0], [0.0]),
    lambda: FixedNorm([], []),
    lambda: ZScoreNorm(3, mask="brain"),
    lambda: ZScoreNorm(0),
    lambda: ZScoreNorm(3, min_std=0.0),
])
def test_bad_arguments(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        make()
