"""``nnunet:FOLDER`` against nnunetv2's own predictor (the outside oracle), the exact gradient, and an attack.

The folder is written as nnU-Net writes one (tests/helpers/nnunet_folder.py): a tiny PlainConvUNet, anisotropic
spacing and a non-trivial ``transpose_forward``, so that every axis mapping between nibabel's voxel order and nnU-Net's
is exercised. nnU-Net accumulates the stitched logits in float16; volrob stitches in float32. The tight comparisons run
nnU-Net's own predictor with its accumulators switched to float32 (the only change); the comparisons on the source grid
use nnU-Net unchanged, reading and writing the files itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2", reason="nnunet extra not installed: pip install -e '.[nnunet]'")

from helpers.nnunet_folder import write_case, write_trained_folder
from helpers.nnunet_oracle import float32_stitching, nnunet_predictor, predict_files

from volrob import attacks
from volrob.data.labels import get_convention
from volrob.data.preprocess import Preprocessed, preprocess
from volrob.inference.segment import to_source_grid
from volrob.sources import ModelSource, load_source

PATCH = (8, 12, 16)  # nnU-Net's axis order
SPACING = (1.0, 2.0, 1.5)  # nnU-Net's axis order
TRANSPOSE = (2, 0, 1)
VOXEL_SPACING = (1.0, 1.5, 2.0)  # the same spacing in the files' voxel order (no resampling)
# Voxel shapes with a 2-voxel zero border: the large brain (13, 22, 18) takes 3 x 2 x 2 windows (the first axis with a
# half-voxel step rounded to even); the small one (6, 20, 10) is padded to the patch on two axes.
SHAPES = {"large": (17, 26, 22), "small": (10, 24, 14)}


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """One intra-op thread (see the root conftest)."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trained_folder(tmp_path_factory.mktemp("nnunet"), folds=(0, 1), patch=PATCH, spacing=SPACING,
                                transpose=TRANSPOSE, mirror_axes=(0, 1, 2), seed=1)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("nnunet_cases")
    return {name: write_case(root, name, shape, VOXEL_SPACING, seed=i)
            for i, (name, shape) in enumerate(SHAPES.items())}


@pytest.fixture(scope="module")
def source(folder: Path) -> ModelSource:
    return load_source(f"nnunet:{folder}", options={"folds": [0, 1]})


@pytest.fixture(scope="module")
def nnunet(folder: Path) -> Any:
    return nnunet_predictor(folder, (0, 1))


@pytest.fixture()
def float32_accumulation() -> Iterator[None]:
    with float32_stitching():
        yield


def read(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    imgs = [nib.load(str(f)) for f in files]
    return np.stack([np.asarray(i.dataobj) for i in imgs]), imgs[0].affine


def volrob_logits(src: ModelSource, files: list[Path]) -> tuple[torch.Tensor, Preprocessed]:
    """volrob's logits on its preprocessed grid (voxel order, canonical channels)."""
    image, affine = read(files)
    pre = preprocess(image, None, affine, src.preprocessing)
    with torch.no_grad():
        return src.predictor(pre.image[None].as_tensor())[0], pre


def nnunet_logits(pred: Any, files: list[Path]) -> torch.Tensor:
    """nnU-Net's logits on its preprocessed grid (its axis order, its channels)."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    image, props = SimpleITKIO().read_images([str(f) for f in files])
    pp = pred.configuration_manager.preprocessor_class(verbose=False)
    data, _, _ = pp.run_case_npy(image, None, props, pred.plans_manager, pred.configuration_manager,
                                 pred.dataset_json)
    return pred.predict_logits_from_preprocessed_data(torch.from_numpy(data)).float()


def in_volrob_terms(src: ModelSource, logits: torch.Tensor) -> torch.Tensor:
    """nnU-Net's logits permuted to voxel order and volrob's channels (the loader's own mapping, checked below)."""
    net = src.predictor.network
    return net.axes.tensor_to_voxel(logits[None])[0][list(net.channel_order)]


def test_mapping_of_axes_channels_and_preprocessing(source: ModelSource) -> None:
    # written out by hand: nnU-Net axis a is voxel axis 2 - transpose_forward[a]
    assert source.predictor.network.axes.voxel_axis == (0, 2, 1)
    assert source.predictor.window.roi_size == (8, 16, 12)
    assert source.preprocessing.spacing == VOXEL_SPACING and source.preprocessing.orientation is None
    assert source.preprocessing.crop_margin == 0 and source.preprocessing.scaling == "linear"
    # nnU-Net labels (Dataset137): 0 background, 1 edema, 2 non-enhancing, 3 enhancing -> background, NCR, ED, ET
    assert source.predictor.output_mode == "labels" and source.predictor.network.channel_order == (0, 2, 1, 3)
    assert source.modalities == ["t1", "t1ce", "t2", "flair"]


@pytest.mark.parametrize("case", list(SHAPES))
def test_logits_equal_nnunet_predictor(source: ModelSource, nnunet: Any, cases: dict[str, list[Path]], case: str,
                                       float32_accumulation: None) -> None:
    """Two folds, mirroring over three axes: volrob's logits are nnU-Net's, voxel for voxel."""
    ours, _ = volrob_logits(source, cases[case])
    theirs = in_volrob_terms(source, nnunet_logits(nnunet, cases[case]))
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 2e-5
    counts = np.bincount(ours.argmax(0).flatten().numpy(), minlength=4)
    assert (counts > 0).all()  # every class is predicted somewhere: the comparison is not trivial


def test_network_sees_nnunet_normalised_input(source: ModelSource, nnunet: Any, cases: dict[str, list[Path]]) -> None:
    """The z-score inside the predictor, on volrob's [0, 1] input, equals nnU-Net's preprocessing of the raw file
    (brain-mask statistics over the mask with its hole filled)."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    image, affine = read(cases["large"])
    pre = preprocess(image, None, affine, source.preprocessing)
    ours = source.predictor.normalise(pre.image[None].as_tensor())
    raw, props = SimpleITKIO().read_images([str(f) for f in cases["large"]])
    data, _, _ = nnunet.configuration_manager.preprocessor_class(verbose=False).run_case_npy(
        raw, None, props, nnunet.plans_manager, nnunet.configuration_manager, nnunet.dataset_json)
    theirs = source.predictor.network.axes.tensor_to_voxel(torch.from_numpy(data)[None])
    assert ours.shape == theirs.shape and (ours - theirs).abs().max().item() < 1e-5
    hole = tuple(s // 2 for s in SHAPES["large"])
    assert image[(slice(None), *hole)].max() == 0 and ours[0, :, 6, 11, 9].abs().min() > 0  # the hole, z-scored


def nnunet_files(pred: Any, files: list[Path], out: Path) -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net's label map (canonical) and probabilities (volrob's class order) for one case, in voxel order."""
    seg, prob = predict_files(pred, files, out)
    return get_convention("msd").to_canonical(seg), prob[[0, 2, 1, 3]]


@pytest.mark.parametrize("case", list(SHAPES))
def test_source_grid_equals_nnunet_files(source: ModelSource, nnunet: Any, cases: dict[str, list[Path]], case: str,
                                         tmp_path: Path) -> None:
    """nnU-Net reads the NIfTI files and writes its label map and probabilities. With float32 stitching they are
    volrob's, on the source grid. Unchanged (float16 stitching), nnU-Net departs from its own float32 result at a few
    voxels where the Gaussian weights are tiny (the corners of the crop box): volrob differs from it exactly there."""
    with float32_stitching():
        seg32, prob32 = nnunet_files(nnunet, cases[case], tmp_path / "fp32")
    seg16, prob16 = nnunet_files(nnunet, cases[case], tmp_path / "fp16")
    logits, pre = volrob_logits(source, cases[case])
    labels = to_source_grid(logits.argmax(0, keepdim=True).float(), pre, nearest=True)[0].round().astype(np.uint8)
    prob = to_source_grid(torch.softmax(logits, 0), pre, nearest=False)
    prob[0][prob.sum(0) == 0] = 1.0  # nnU-Net's probabilities outside its crop box: background
    assert labels.shape == seg32.shape == SHAPES[case]
    np.testing.assert_array_equal(labels, seg32)
    assert np.abs(prob - prob32).max() < 1e-5
    np.testing.assert_array_equal(labels != seg16, seg32 != seg16)
    assert (labels != seg16).mean() < 0.005  # measured: 16 of 9724 voxels (large), 1 of 3360 (small)
    assert np.quantile(np.abs(prob - prob16), 0.99) < 0.005


def test_regions_model_equals_nnunet(tmp_path_factory: pytest.TempPathFactory, cases: dict[str, list[Path]],
                                     float32_accumulation: None) -> None:
    """A region-based model (nnU-Net's BraTS setup: whole tumor, tumor core, enhancing tumor, sigmoid), one fold,
    identity transpose: volrob's TC, WT, ET logits are nnU-Net's regions reordered."""
    folder = write_trained_folder(tmp_path_factory.mktemp("regions"), folds=(3,), regions=True, patch=(8, 16, 12),
                                  spacing=VOXEL_SPACING[::-1], transpose=(0, 1, 2), seed=5)
    src = load_source(f"nnunet:{folder}", options={})
    assert src.origin["folds"] == [3] and src.predictor.output_mode == "regions"
    assert src.predictor.network.channel_order == (1, 0, 2)  # (TC, WT, ET) from (whole, core, enhancing)
    ours, _ = volrob_logits(src, cases["small"])
    theirs = in_volrob_terms(src, nnunet_logits(nnunet_predictor(folder, (3,)), cases["small"]))
    assert (ours - theirs).abs().max().item() < 2e-5
    assert 0 < (ours > 0).float().mean() < 1


def test_exact_gradient_equals_plain_autograd(source: ModelSource, cases: dict[str, list[Path]]) -> None:
    """The memory-bounded gradient (windows and fold/mirror terms recomputed one at a time) equals autograd over
    the same computation with every graph kept (the predictor in training mode: plain autograd throughout); the
    small case has two overlapping windows along one axis and padding along the others.

    One window per network call on both paths: batching windows changes float32 rounding, and a pre-activation within
    rounding of a LeakyReLU kink then takes the other slope (seen here, 0.4 apart, with two windows per call)."""
    pred = source.with_window({"sw_batch_size": 1})
    image, affine = read(cases["small"])
    x = preprocess(image, None, affine, source.preprocessing).image[None].as_tensor()
    w = torch.randn(source.predictor(x).shape, generator=torch.Generator().manual_seed(0))
    grads, outs = [], []
    for train in (False, True):
        pred.train(train)
        xg = x.clone().requires_grad_(True)
        out = pred(xg)
        (out * w).sum().backward()
        grads.append(xg.grad)
        outs.append(out.detach())
    pred.eval()
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=2e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
    assert grads[0].abs().max() > 0.1


def test_pgd_keeps_its_budget_and_the_background(source: ModelSource, cases: dict[str, list[Path]]) -> None:
    image, affine = read(cases["small"])
    x = preprocess(image, None, affine, source.preprocessing).image[None].as_tensor()
    with torch.no_grad():
        target = source.predictor(x).argmax(1, keepdim=True)
    res = attacks.create("pgd", eps=8, steps=2, seed=0).run(source.predictor, x, target)
    delta = res.x_adv - x
    assert delta.abs().max() <= 8 / 255 + 1e-6 and delta.abs().max() > 4 / 255
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    background = (x == 0).all(1, keepdim=True).expand_as(x)
    assert background.any() and (res.x_adv[background] == 0).all()
    with torch.no_grad():
        changed = (source.predictor(res.x_adv).argmax(1, keepdim=True) != target).float().mean()
    assert changed > 0
