"""A bundle loaded by volrob computes what the bundle's own MONAI pipeline computes.

The oracle is MONAI itself: the test (trusted) builds the bundle's preprocessing, network and inferer from the same
config with ``monai.bundle.ConfigParser`` and runs them on the raw image in a NIfTI file; volrob reads the same file
through its own data side (geometry, ``linear`` [0, 1] scaling) and its predictor. Volumes are larger than the ROI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers.bundle_folder import brats_config, geometry_config, metadata, write_bundle
from monai.bundle import ConfigParser
from monai.inferers import sliding_window_inference
from monai.transforms import NormalizeIntensity

from volrob.attacks import create as create_attack
from volrob.data.preprocess import preprocess
from volrob.sources import ModelSource, load_source

SHAPE = (40, 36, 44)


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> Iterator[None]:
    yield


def raw_image(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    """(4, *shape) MRI-like intensities: an ellipsoidal brain with channel-specific scales, zero outside."""
    g = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    r = np.sqrt(sum(((grid[i] - s / 2) / (s * 0.42)) ** 2 for i, s in enumerate(shape)))
    brain = r < 1
    img = np.zeros((4, *shape), np.float32)
    for c, scale in enumerate((900.0, 1500.0, 300.0, 2500.0)):
        img[c][brain] = g.gamma(4.0, scale / 4, int(brain.sum()))
    img[1][brain & (grid[0] < shape[0] // 3)] = 0  # a channel with its own zeros inside the brain
    return img


def write_case(folder: Path, img: np.ndarray, affine: np.ndarray) -> tuple[Path, np.ndarray]:
    """The image as a 4D NIfTI, and the affine as stored (float32 in the header, as volrob's reader sees it)."""
    path = folder / "case.nii.gz"
    nib.save(nib.Nifti1Image(np.moveaxis(img, 0, -1), affine), path)
    return path, np.asarray(nib.load(path).affine)


def monai_logits(folder: Path, case: Path) -> torch.Tensor:
    """The bundle's own pipeline (MONAI's ConfigParser, preprocessing, network with model.pt, inferer)."""
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    data = parser.get_parsed_content("preprocessing")({"image": str(case)})
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(folder / "models" / "model.pt", weights_only=True))
    with torch.no_grad():
        return parser.get_parsed_content("inferer")(data["image"][None].as_tensor(), net.eval())


def volrob_input(src: ModelSource, img: np.ndarray, affine: np.ndarray) -> torch.Tensor:
    return preprocess(img, None, affine, src.preprocessing).image.as_tensor()[None]


@pytest.fixture(scope="module")
def brats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("brats_bundle"), brats_config(), meta=metadata())


def test_brats_bundle_logits_equal_monai_pipeline(brats: Path, tmp_path: Path) -> None:
    src = load_source(f"bundle:{brats}")
    assert src.predictor.output_mode == "regions" and src.modalities == ["t1", "t1ce", "t2", "flair"]
    assert src.preprocessing.scaling == "linear" and src.preprocessing.spacing is None
    assert src.preprocessing.orientation is None and not src.preprocessing.crop_foreground
    win = src.predictor.window
    assert (win.roi_size, win.overlap, win.mode, win.sw_batch_size) == ((32, 32, 32), 0.5, "constant", 2)
    assert src.origin["norm"] == {"kind": "zscore", "mask": "channel", "min_std": 1e-8, "zero_std": "one"}
    case, affine = write_case(tmp_path, raw_image(), np.diag([1.0, 1.0, 1.0, 1.0]))
    want = monai_logits(brats, case)
    x = volrob_input(src, raw_image(), affine)
    assert x.min() >= 0 and x.max() == 1 and tuple(x.shape[2:]) == SHAPE  # the [0, 1] attack space, not raw
    with torch.no_grad():
        got = src.predictor(x)
    got_exact = src.predictor(x.clone().requires_grad_(True)).detach()  # the exact windowed-gradient path
    assert want.std() > 0.05  # outputs vary across the volume
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
    torch.testing.assert_close(got_exact, want, rtol=0, atol=2e-5)


def test_geometry_bundle_logits_equal_monai_pipeline(tmp_path: Path) -> None:
    """Orientation, anisotropic resampling, foreground crop, min-max scaling, Gaussian blending; input modalities
    (MONAI's BraTS order) and softmax outputs in orders (from metadata) other than volrob's."""
    outputs = ("background", "peritumoral edema", "necrotic core", "GD-enhancing tumour")
    meta = metadata(inputs=("T1c", "T1", "T2", "FLAIR"), outputs=outputs)
    folder = write_bundle(tmp_path / "geo", geometry_config(roi=24), meta=meta, seed=3)
    src = load_source(f"bundle:{folder}")
    assert src.predictor.output_mode == "labels" and src.modalities == ["t1", "t1ce", "t2", "flair"]
    assert src.preprocessing.orientation == "RAS" and src.preprocessing.spacing == (1.5, 1.25, 2.0)
    assert src.preprocessing.crop_foreground and src.preprocessing.crop_margin == 2
    assert src.origin["output_channels"]["channels"] == ["background", "ED", "NCR", "ET"]
    affine = np.array([[-1.2, 0, 0, 30.0], [0, 0, 1.1, -20.0], [0, -1.4, 0, 10.0], [0, 0, 0, 1]])
    img = raw_image((34, 30, 28), seed=1)  # in the bundle's order: T1c, T1, T2, FLAIR
    case, affine = write_case(tmp_path, img, affine)
    want = monai_logits(folder, case)[:, [0, 2, 1, 3]]  # volrob's class order: background, NCR, ED, ET
    x = volrob_input(src, img[[1, 0, 2, 3]], affine)  # volrob's order: T1, T1c, T2, FLAIR
    assert tuple(x.shape) == (1, 4, *want.shape[2:]) and x.shape[2] > 24
    with torch.no_grad():
        got = src.predictor(x)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)


def _zscore_nonzero(c: torch.Tensor) -> torch.Tensor:
    """One channel z-scored over its non-zero voxels, in plain differentiable torch (MONAI's transform takes its
    statistics with ``.item()``, outside the graph, so it cannot serve as the gradient's reference)."""
    m = c != 0
    vals = c[m]
    return torch.where(m, (c - vals.mean()) / vals.std(unbiased=False), torch.zeros_like(c))


def test_gradient_equals_autograd_through_monai(brats: Path) -> None:
    """The predictor's exact window-by-window gradient equals plain autograd through the same z-score (checked
    against MONAI's values) and MONAI's sliding-window inference."""
    src = load_source(f"bundle:{brats}")
    x = volrob_input(src, raw_image(), np.eye(4))
    w = torch.randn(1, 3, *SHAPE, generator=torch.Generator().manual_seed(5))
    xa = x.clone().requires_grad_(True)
    (src.predictor(xa) * w).sum().backward()
    xb = x.clone().requires_grad_(True)
    normed = torch.stack([_zscore_nonzero(c) for c in xb[0]])[None]
    torch.testing.assert_close(normed, NormalizeIntensity(nonzero=True, channel_wise=True)(x[0].clone())[None])
    out = sliding_window_inference(normed, (32, 32, 32), 2, src.predictor.network, overlap=0.5, mode="constant")
    (out * w).sum().backward()
    assert xa.grad is not None and xb.grad is not None and xb.grad.abs().max() > 0
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5 * float(xb.grad.abs().max()))


def test_attack_keeps_its_budget(brats: Path) -> None:
    src = load_source(f"bundle:{brats}")
    x = volrob_input(src, raw_image(), np.eye(4))
    with torch.no_grad():
        target = (src.predictor(x) > 0).float()
    attack = create_attack("pgd", eps=8, steps=2, seed=0)
    res = attack(src.predictor, x, target)
    delta = res.x_adv - x
    assert delta.abs().max() <= 8 / 255 + 1e-6 and delta.abs().max() > 4 / 255
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    outside = ~(x != 0).any(1, keepdim=True).expand_as(x)
    assert delta[outside].abs().max() == 0  # the brain mask holds
    with torch.no_grad():
        assert ((src.predictor(res.x_adv) > 0).float() != target).float().mean() > 0.01  # it does something
