"""Data-side preprocessing: [0, 1] attack space, orientation/spacing/crop, exact inversion for predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd

from volrob.data.preprocess import PreprocessConfig, channel_stats, preprocess
from volrob.errors import ConfigError


def make_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = np.zeros((4, 40, 44, 30), np.float32)
    img[:, 6:34, 8:38, 4:26] = rng.uniform(50, 900, size=(4, 28, 30, 22))
    lab = np.zeros((40, 44, 30), np.uint8)
    lab[12:20, 15:22, 8:14] = 2
    lab[14:17, 17:20, 10:12] = 3
    aff = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS-like storage, as many BraTS files
    aff[:3, 3] = [20.0, 22.0, -15.0]
    return img, lab, aff


def test_unit_range_background_and_ras() -> None:
    img, lab, aff = make_case()
    p = preprocess(img, lab, aff, PreprocessConfig())
    x = p.image.as_tensor()
    assert x.min() >= 0 and x.max() <= 1 and x.dtype == torch.float32
    brain = (x > 0).any(0)
    assert brain.float().mean() > 0.5  # cropped to the brain (+ margin)
    assert (np.diag(p.image.affine.numpy())[:3] > 0).all()  # RAS after orientation
    assert p.label is not None and set(p.label.unique().tolist()) == {0, 2, 3}
    assert p.image.shape[1:] == p.label.shape[1:]
    assert np.array_equal(img, make_case()[0])  # input untouched


def test_percentiles_map_to_unit_interval() -> None:
    img, _, aff = make_case()
    cfg = PreprocessConfig(crop_foreground=False, lower_percentile=0.0, upper_percentile=100.0)
    x = preprocess(img, None, aff, cfg).image.as_tensor()
    for c in range(4):
        vals = x[c][x[c] > 0]
        assert vals.max() == pytest.approx(1.0) and vals.min() < 1e-3


def test_inverse_restores_source_grid() -> None:
    img, lab, aff = make_case()
    p = preprocess(img, lab, aff, PreprocessConfig())
    pred = MetaTensor(p.label.float(), meta=dict(p.image.meta), applied_operations=list(p.image.applied_operations))
    back = Invertd("pred", p.spatial, orig_keys="image", nearest_interp=True)({"image": p.image, "pred": pred})
    np.testing.assert_array_equal(back["pred"][0].numpy().astype(np.uint8), lab)
    np.testing.assert_allclose(back["pred"].affine.numpy(), aff)


def test_resampling_to_coarser_spacing() -> None:
    img, lab, aff = make_case()
    p = preprocess(img, lab, aff, PreprocessConfig(spacing=(2.0, 2.0, 2.0), crop_foreground=False))
    assert all(abs(n - m / 2) <= 1 for n, m in zip(p.image.shape[1:], (40, 44, 30), strict=True))
    np.testing.assert_allclose(np.abs(np.diag(p.image.affine.numpy())[:3]), 2.0)


def test_config_round_trip_and_errors() -> None:
    cfg = PreprocessConfig(spacing=(1.0, 1.2, 2.0), crop_margin=5)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    for bad, frag in [({"spacing": [1, 1]}, "spacing"), ({"orientation": "XYZ"}, "orientation"),
                      ({"lower_percentile": 60, "upper_percentile": 40}, "percentile"),
                      ({"crop_margin": -1}, "crop_margin"), ({"zoom": 2}, "unknown key")]:
        with pytest.raises(ConfigError, match=frag):
            PreprocessConfig.from_dict(bad)


def test_channel_stats_against_numpy() -> None:
    rng = np.random.default_rng(1)
    imgs = []
    for _ in range(3):
        a = np.zeros((2, 6, 6, 6), np.float32)
        a[:, 1:5, 1:5, 1:5] = rng.uniform(0.1, 1, size=(2, 4, 4, 4))
        imgs.append(torch.from_numpy(a))
    mean, std = channel_stats(imgs)
    vals = np.concatenate([i.numpy()[:, 1:5, 1:5, 1:5].reshape(2, -1) for i in imgs], axis=1)
    np.testing.assert_allclose(mean, vals.mean(1), rtol=1e-6)
    np.testing.assert_allclose(std, vals.std(1), rtol=1e-5)
    with pytest.raises(ConfigError):
        channel_stats([])


def test_linear_scaling_keeps_voxel_order_and_is_affine() -> None:
    """``linear`` (for networks that z-score their own input): a division by the brain maximum, no clipping, the
    file's voxel order kept and the non-zero crop exact (margin 0)."""
    img, lab, aff = make_case(3)
    img[1, 10, 10, 10] = 5000.0  # an outlier the percentile scaling would clip
    cfg = PreprocessConfig(orientation=None, spacing=None, crop_margin=0, scaling="linear")
    p = preprocess(img, lab, aff, cfg)
    x = p.image.as_tensor().numpy()
    np.testing.assert_allclose(p.image.affine.numpy()[:3, :3], aff[:3, :3])  # no reorientation
    box = img[:, 6:34, 8:38, 4:26]
    assert x.shape == box.shape
    np.testing.assert_allclose(x, box / box.reshape(4, -1).max(1)[:, None, None, None], rtol=1e-6)
    assert cfg.to_dict()["scaling"] == "linear" and PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert "scaling" not in PreprocessConfig().to_dict()  # the default leaves older records unchanged
    with pytest.raises(ConfigError, match="scaling"):
        PreprocessConfig(scaling="zscore")


def test_linear_scaling_shifts_negative_channels() -> None:
    img, _, aff = make_case(4)
    img[2, 6:34, 8:38, 4:26] -= 300.0  # a channel with negative intensities
    cfg = PreprocessConfig(orientation=None, spacing=None, crop_margin=0, scaling="linear")
    x = preprocess(img, None, aff, cfg).image.as_tensor().numpy()
    ch = img[2, 6:34, 8:38, 4:26]
    np.testing.assert_allclose(x[2], (ch - ch.min()) / (ch.max() - ch.min()), rtol=1e-5, atol=1e-6)
    assert x.min() >= 0 and x.max() <= 1
