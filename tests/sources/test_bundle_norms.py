"""The predictor-side normalisations a bundle maps to, against MONAI's own transforms: ``ZScoreNorm`` against
``NormalizeIntensity`` (non-zero or all voxels, including a constant and an empty channel) and ``MinMaxNorm``
against ``ScaleIntensity``; both unchanged by the per-channel [0, 1] scaling of the attack space."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import NormalizeIntensity, ScaleIntensity

from volrob.errors import ConfigError
from volrob.inference.normalise import ZScoreNorm
from volrob.sources.bundle.minmax import MinMaxNorm


def _raw(seed: int = 0) -> torch.Tensor:
    """(4, 12, 10, 8) non-negative intensities with a zero background; channel 2 constant over its non-zero voxels,
    channel 3 entirely zero."""
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(4, 12, 10, 8, generator=g) * torch.tensor([900.0, 40.0, 1.0, 1.0]).view(4, 1, 1, 1)
    img[:, :3] = 0
    img[0, 5:7, 2:4] = 0  # a hole inside the brain in one channel only
    img[2] = torch.where(img[2] != 0, torch.full_like(img[2], 7.25), img[2])
    img[3] = 0
    return img


def _attack_space(img: torch.Tensor) -> torch.Tensor:
    """volrob's ``linear`` scaling: each channel divided by its maximum (non-negative intensities)."""
    top = img.flatten(1).amax(1).clamp(min=1e-8).view(-1, 1, 1, 1)
    return img / top


@pytest.mark.parametrize("nonzero", [True, False])
def test_zscore_equals_monai_normalize_intensity(nonzero: bool) -> None:
    img = _raw()
    want = NormalizeIntensity(nonzero=nonzero, channel_wise=True)(img.clone())
    norm = ZScoreNorm(4, mask="channel" if nonzero else "all", zero_std="one")
    got_raw = norm(img[None])[0]
    got_scaled = norm(_attack_space(img)[None])[0]
    want = torch.as_tensor(want)
    varying = slice(0, 2) if nonzero else slice(0, 3)
    torch.testing.assert_close(got_raw[varying], want[varying], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_scaled[varying], want[varying], rtol=1e-5, atol=1e-5)
    if nonzero:
        # constant over its non-zero voxels: std 0 divides by 1 (MONAI's rule), so it maps to exactly 0 in the
        # attack space, where the channel is exactly 1.0 wherever it is non-zero; MONAI on raw 7.25 agrees up to
        # its own rounding
        assert got_scaled[2].abs().max() == 0 and want[2].abs().max() < 1e-5
    assert got_scaled[3].abs().max() == 0 and want[3].abs().max() == 0  # an empty channel stays 0


def test_zscore_clamp_rule_and_mask_any_unchanged() -> None:
    x = _attack_space(_raw())[None]
    clamp = ZScoreNorm(4, mask="any")(x)
    brain = (x != 0).any(1, keepdim=True)
    vals = x[0, 0][brain[0, 0]]
    want0 = (x[0, 0] - vals.mean()) / vals.std(unbiased=False)
    torch.testing.assert_close(clamp[0, 0][brain[0, 0]], want0[brain[0, 0]])
    assert ZScoreNorm(4).record() == {"kind": "zscore", "mask": "any", "min_std": 1e-8}
    assert ZScoreNorm(4, mask="channel", zero_std="one").record()["zero_std"] == "one"
    with pytest.raises(ConfigError, match="zero_std"):
        ZScoreNorm(4, zero_std="nan")


def test_zscore_gradient_is_finite_on_a_constant_channel() -> None:
    x = _attack_space(_raw())[None].requires_grad_(True)
    (ZScoreNorm(4, mask="channel", zero_std="one")(x) ** 2).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("minv", "maxv"), [(0.0, 1.0), (-1.0, 1.0), (None, 1.0)])
def test_minmax_equals_monai_scale_intensity(minv: float | None, maxv: float | None) -> None:
    img = _raw()[:2]
    want = torch.as_tensor(ScaleIntensity(minv=minv, maxv=maxv, channel_wise=True)(img.clone()))
    norm = MinMaxNorm(2, minv=minv, maxv=maxv)
    torch.testing.assert_close(norm(img[None])[0], want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(norm(_attack_space(img)[None])[0], want, rtol=1e-6, atol=1e-6)
    flat = torch.full((1, 1, 3, 3, 3), 5.0)
    assert torch.equal(MinMaxNorm(1, minv=minv, maxv=maxv)(flat)[0],
                       torch.as_tensor(ScaleIntensity(minv=minv, maxv=maxv, channel_wise=True)(flat[0])))
