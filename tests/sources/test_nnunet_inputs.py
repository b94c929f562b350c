"""``nnunet:FOLDER``: checkpoints read without running pickled code, one-line errors for bad folders and options,
and the window layout, Gaussian, label and channel mappings against nnunetv2's own functions or written-out facts."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2", reason="nnunet extra not installed: pip install -e '.[nnunet]'")

from helpers.nnunet_folder import LABELS, REGIONS, dataset, write_trained_folder

import volrob.sources.nnunet as package
from volrob.errors import CheckpointError, ConfigError, VolrobError
from volrob.sources import load_source
from volrob.sources.nnunet.labels import output_map
from volrob.sources.nnunet.modalities import model_modalities
from volrob.sources.nnunet.windows import nnunet_gaussian, window_starts

CKPT = Path("fold_0") / "checkpoint_final.pth"


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """One intra-op thread (see the root conftest)."""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trained_folder(tmp_path_factory.mktemp("pristine"), folds=(0, 2), patch=(8, 8, 8))


@pytest.fixture()
def folder(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the pristine folder, to spoil."""
    return Path(shutil.copytree(pristine, tmp_path / pristine.name))


def one_line(err: pytest.ExceptionInfo[VolrobError]) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_checkpoint(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    ckpt = torch.load(path, weights_only=False)  # the test's own file, written by the helper
    change(ckpt)
    torch.save(ckpt, path)


class Evil:
    """Runs a command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_loads_with_defaults(pristine: Path) -> None:
    src = load_source(f"nnunet:{pristine}")
    o = src.origin
    assert o["folds"] == [0, 2] and o["configuration"] == "3d_fullres"
    assert o["checkpoint_name"] == "checkpoint_final.pth" and o["folder"] == str(pristine)
    assert o["mirror_axes"] == [0, 1, 2] and o["step_size"] == 0.5 and o["blend"] == "gaussian" and o["fixed_input"]
    assert o["normalisation"]["schemes"] == ["ZScoreNormalization"] * 4
    assert o["outputs"]["canonical"] == {"background": "background", "NCR": "non-enhancing", "ED": "edema",
                                         "ET": "enhancing"}
    import hashlib

    shas = {f"fold_{f}": hashlib.sha256((pristine / f"fold_{f}" / "checkpoint_final.pth").read_bytes()).hexdigest()
            for f in (0, 2)}
    assert o["checkpoint_sha256"] == shas and len(src.sha256 or "") == 64 and src.sha256 not in shas.values()
    assert src.name == "nnunet_nnUNetTrainer__nnUNetPlans__3d_fullres"
    assert src.sha256 == load_source(f"nnunet:{pristine}", options={"folds": [0, 2]}).sha256
    one = load_source(f"nnunet:{pristine}", options={"folds": 2, "mirror": False})
    assert one.origin["folds"] == [2] and one.origin["mirror_axes"] is None and one.sha256 == shas["fold_2"]
    assert len(one.predictor.network.terms) == 1 and len(src.predictor.network.terms) == 16


def test_trainer_checkpoints_need_the_numpy_allowance(pristine: Path) -> None:
    """The helper's checkpoint, like nnU-Net's, holds numpy scalars: a plain weights-only load refuses it, and the
    allowance is gone after volrob's load (a context manager, not a process-wide change)."""
    path = pristine / CKPT
    with pytest.raises(Exception, match="numpy"):
        torch.load(path, weights_only=True)
    load_source(f"nnunet:{pristine}", options={"folds": [0]})
    with pytest.raises(Exception, match="numpy"):
        torch.load(path, weights_only=True)


def test_pickled_code_is_refused_and_never_run(folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    edit_checkpoint(folder / CKPT, lambda c: c["init_args"].update(evil=Evil(marker)))
    with pytest.raises(CheckpointError) as err:
        load_source(f"nnunet:{folder}", options={"folds": [0]})
    assert "refused" in one_line(err) and "posix.system" in str(err.value) and str(folder / CKPT) in str(err.value)
    assert not marker.exists()


def test_numpy_arrays_are_not_among_the_allowed_globals(folder: Path) -> None:
    edit_checkpoint(folder / CKPT, lambda c: c["logging"].update(extra=np.zeros(3)))
    with pytest.raises(CheckpointError, match="refused"):
        load_source(f"nnunet:{folder}", options={"folds": [0]})


def test_torch_load_only_ever_weights_only(pristine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_source(f"nnunet:{pristine}")
    assert calls == [True, True]
    source = "\n".join(p.read_text() for p in Path(package.__file__).parent.glob("*.py"))
    assert re.search(r"weights_only\s*=\s*(False|0|None)", source) is None
    assert "pickle.load" not in source and "add_safe_globals" not in source


def test_nnunetv2_is_imported_only_when_a_folder_is_loaded() -> None:
    """No module of the package imports nnunetv2 (or its network library) at module level."""
    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(("nnunetv2", "dynamic_network_architectures")) for n in names), path.name


def test_missing_extra_is_one_line(pristine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import volrob.sources.nnunet.requirement as requirement

    def refuse(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(requirement.importlib, "import_module", refuse)
    with pytest.raises(ConfigError) as err:
        load_source(f"nnunet:{pristine}")
    assert "pip install -e '.[nnunet]'" in one_line(err)


SPOILS: list[tuple[str, Callable[[Path], None], dict[str, Any], type[VolrobError], str]] = [
    ("no plans", lambda f: (f / "plans.json").unlink(), {}, CheckpointError, "plans.json.*missing"),
    ("broken dataset.json", lambda f: (f / "dataset.json").write_text("{labels"), {}, CheckpointError,
     "dataset.json.*not readable JSON"),
    ("no labels", lambda f: edit_json(f / "dataset.json", lambda d: d.pop("labels")), {}, CheckpointError,
     "no 'labels'"),
    ("truncated checkpoint", lambda f: (f / CKPT).write_bytes((f / CKPT).read_bytes()[:5000]), {"folds": [0]},
     CheckpointError, "corrupt or truncated|not a torch zip"),
    ("raw pickle", lambda f: (f / CKPT).write_bytes(b"\x80\x02}q\x00."), {"folds": [0]}, CheckpointError,
     "not a torch zip archive"),
    ("weights of another network", lambda f: edit_json(f / "plans.json", lambda p: p["configurations"]["3d_fullres"][
        "architecture"]["arch_kwargs"].update(features_per_stage=[4, 8, 32])), {"folds": [0]}, CheckpointError,
     "weights do not fit"),
    ("foreign network class", lambda f: edit_json(f / "plans.json", lambda p: p["configurations"]["3d_fullres"][
        "architecture"].update(network_class_name="os.system")), {"folds": [0]}, CheckpointError,
     "network_class_name must name a class of"),
    ("unknown network class", lambda f: edit_json(f / "plans.json", lambda p: p["configurations"]["3d_fullres"][
        "architecture"].update(network_class_name="dynamic_network_architectures.architectures.unet.NoSuchNet")),
     {"folds": [0]}, CheckpointError, "cannot build dynamic_network_architectures.architectures.unet.NoSuchNet"),
    ("foreign layer", lambda f: edit_json(f / "plans.json", lambda p: p["configurations"]["3d_fullres"][
        "architecture"]["arch_kwargs"].update(nonlin="builtins.eval")), {"folds": [0]}, CheckpointError,
     "arch_kwargs.nonlin must name a layer"),
    ("CT normalisation", lambda f: edit_json(f / "plans.json", lambda p: p["configurations"]["3d_fullres"].update(
        normalization_schemes=["CTNormalization"] * 4)), {"folds": [0]}, ConfigError,
     r"CTNormalization.*not supported"),
    ("unknown label names", lambda f: edit_json(f / "dataset.json", lambda d: d.update(
        labels={"background": 0, "a": 1, "b": 2, "c": 3})), {"folds": [0]}, ConfigError, "set options.labels"),
    ("five labels", lambda f: edit_json(f / "dataset.json", lambda d: d["labels"].update(resection=4)),
     {"folds": [0], "labels": "brats2023"}, ConfigError, "has no label value"),
    ("bad mirror axes", lambda f: edit_checkpoint(f / CKPT, lambda c: c.update(
        inference_allowed_mirroring_axes=[0, 5])), {"folds": [0]}, CheckpointError, "inference_allowed_mirroring"),
    ("trained with 2d", lambda f: edit_checkpoint(f / CKPT, lambda c: c["init_args"].update(configuration="2d")),
     {"folds": [0]}, ConfigError, "not 3D"),
    ("mixed configurations", lambda f: edit_checkpoint(f / CKPT, lambda c: c["init_args"].update(
        configuration="3d_lowres")), {}, CheckpointError, "different configurations"),
    ("no folds", lambda f: [shutil.rmtree(f / d) for d in ("fold_0", "fold_2")], {}, CheckpointError,
     "no fold_k/checkpoint_final.pth"),
]


@pytest.mark.filterwarnings("ignore:Network class")  # nnunetv2's search for an unknown class announces itself
@pytest.mark.parametrize(("spoil", "options", "error", "match"), [s[1:] for s in SPOILS], ids=[s[0] for s in SPOILS])
def test_bad_folders_give_one_line(folder: Path, spoil: Callable[[Path], None], options: dict[str, Any],
                                   error: type[VolrobError], match: str) -> None:
    spoil(folder)
    with pytest.raises(error) as err:
        load_source(f"nnunet:{folder}", options=options)
    assert re.search(match, one_line(err)), str(err.value)


BAD_OPTIONS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"folds": [1]}, {}, r"options.folds: fold 1 has no checkpoint_final.pth .* \(folds with it: \[0, 2\]\)"),
    ({"folds": "all"}, {}, "fold all has no"),
    ({"folds": [0, 0]}, {}, "distinct"),
    ({"folds": [-1]}, {}, "fold numbers >= 0"),
    ({"folds": [True]}, {}, "fold numbers >= 0"),
    ({"checkpoint_name": "../fold_0/checkpoint_final.pth"}, {}, "a file name inside fold_k"),
    ({"checkpoint_name": "checkpoint_best.pth"}, {}, "options.checkpoint_name: no fold_k/checkpoint_best.pth"),
    ({"configuration": "3d_lowres"}, {}, "'3d_lowres', but the checkpoints .* were trained with '3d_fullres'"),
    ({"mirror": "yes"}, {}, "options.mirror"),
    ({"labels": "brats2099"}, {}, "unknown label convention"),
    ({"labels": "brats2021"}, {}, r"convention 'brats2021' has no label value\(s\) \[3\]"),
    ({"modalities": ["t1", "t2"]}, {}, "4 channels"),
    ({"trust": True}, {}, r"options: \['trust'\] do not apply to nnunet models"),
    ({}, {"roi_size": [16, 16, 16]}, r"only accepts its patch size \[8, 8, 8\]"),
]


@pytest.mark.parametrize(("options", "window", "match"), BAD_OPTIONS)
def test_bad_options_give_one_line(pristine: Path, options: dict[str, Any], window: dict[str, Any],
                                   match: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_source(f"nnunet:{pristine}", options=options, window=window)
    assert re.search(match, one_line(err)), str(err.value)


def test_bad_locations(tmp_path: Path, pristine: Path) -> None:
    with pytest.raises(ConfigError, match="folder does not exist"):
        load_source(f"nnunet:{tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match="give the folder"):
        load_source("nnunet:")
    with pytest.raises(ConfigError, match="fixed_input|only accepts its ROI"):
        load_source(f"nnunet:{pristine}", options={"folds": [0]}).with_window({"roi_size": [4, 4, 4]})


def test_configuration_from_the_folder_name_and_inheritance(folder: Path) -> None:
    """Without ``init_args`` the folder's name says the configuration; a configuration inheriting from another
    (nnU-Net's ``inherits_from``) is resolved by nnunetv2's plans reader."""
    for f in ("fold_0", "fold_2"):
        edit_checkpoint(folder / f / "checkpoint_final.pth", lambda c: c.pop("init_args"))
    edit_json(folder / "plans.json", lambda p: p["configurations"].update(
        my_config={"inherits_from": "3d_fullres", "patch_size": [8, 16, 8]}))
    assert load_source(f"nnunet:{folder}").origin["configuration"] == "3d_fullres"
    src = load_source(f"nnunet:{folder}", options={"configuration": "my_config"})
    assert src.origin["configuration"] == "my_config" and src.predictor.window.roi_size == (8, 16, 8)
    with pytest.raises(ConfigError, match="'nope' is not in .*plans.json"):
        load_source(f"nnunet:{folder}", options={"configuration": "nope"})


def test_window_starts_match_nnunet() -> None:
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    for patch in (8, 12, 16, 96, 128):
        for size in range(patch, 3 * patch + 7):
            for step in (0.5, 0.25, 0.75, 1.0):
                assert window_starts(size, patch, step) == compute_steps_for_sliding_window(
                    (size,), (patch,), step)[0], (size, patch, step)
    assert window_starts(13, 8, 0.5) == [0, 2, 5]  # 2.5 rounds to even
    assert window_starts(110, 64, 0.5) == [0, 23, 46]  # nnU-Net's own example


def test_gaussian_matches_nnunet() -> None:
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    for patch in ((8, 12, 16), (128, 128, 128), (40, 56, 40)):
        theirs = compute_gaussian(patch, sigma_scale=1.0 / 8, value_scaling_factor=10, device=torch.device("cpu"))
        ours = nnunet_gaussian(patch)
        assert theirs.dtype == torch.float16 and torch.equal(ours, theirs.float())
    g = nnunet_gaussian((128, 128, 128))
    assert g.max() == 10 and g.min() > 0 and g[64, 64, 64] == 10


@pytest.mark.parametrize(("scheme", "masked"), [("ZScoreNormalization", True), ("ZScoreNormalization", False),
                                                ("RescaleTo01Normalization", False)])
def test_normalisation_matches_nnunet(scheme: str, masked: bool) -> None:
    """nnU-Net's normaliser on the raw intensities (its crop mask: non-zero in any channel, holes filled) equals
    volrob's on the [0, 1] scaling of the same volume."""
    from nnunetv2.preprocessing.cropping.cropping import create_nonzero_mask
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as schemes

    from volrob.data.preprocess import ScaleToUnitd
    from volrob.sources.nnunet.normalisation import NnunetNorm

    g = np.random.default_rng(0)
    raw = (g.random((2, 12, 10, 9)) * np.array([900.0, 40.0])[:, None, None, None] + 5).astype(np.float32)
    raw[:, :2] = 0  # outside the brain
    raw[:, 6, 5, 4] = 0  # a hole inside it
    raw[1, 8, 3:6, 2] = 0  # zero in one channel only
    seg = np.where(create_nonzero_mask(raw), 0, -1)
    theirs = np.stack([getattr(schemes, scheme)(use_mask_for_norm=masked, intensityproperties={}).run(
        raw[c].copy(), seg) for c in range(2)])
    x = ScaleToUnitd("image", scaling="linear").scale(torch.from_numpy(raw))[None]
    ours = NnunetNorm([scheme] * 2, [masked] * 2)(x)[0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=2e-5)
    if masked:  # the hole is inside the mask (z-scored), the background outside (0)
        assert (ours[:, 6, 5, 4] != 0).all() and (ours[:, :2] == 0).all()


@pytest.mark.parametrize(("labels", "option", "order"), [
    (LABELS, None, (0, 2, 1, 3)),  # nnU-Net's Dataset137: 1 edema, 2 non-enhancing, 3 enhancing
    ({"background": 0, "NCR": 1, "ED": 2, "ET": 3}, None, (0, 1, 2, 3)),
    ({"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}, None, (0, 1, 2, 3)),
    ({"background": 0, "peritumoral edema": 1, "necrotic tumor core": 2, "enhancing tumour": 3}, None, (0, 2, 1, 3)),
    ({"background": 0, "x": 1, "y": 2, "z": 3}, "msd", (0, 2, 1, 3)),
    ({"background": 0, "x": 1, "y": 2, "z": 3}, "brats2023", (0, 1, 2, 3)),
])
def test_label_channels(labels: dict[str, Any], option: str | None, order: tuple[int, ...]) -> None:
    out = output_map(dataset(labels), option)
    assert out.mode == "labels" and out.channel_order == order


@pytest.mark.parametrize(("labels", "option", "order"), [
    (REGIONS, None, (1, 0, 2)),
    (REGIONS, "msd", (1, 0, 2)),  # WT [1, 2, 3] = all, TC [2, 3] = NCR + ET, ET 3
    ({"background": 0, "ET": [3], "TC": [1, 3], "WT": [1, 2, 3]}, None, (1, 2, 0)),
    ({"background": 0, "a": [3], "b": [1, 3], "c": [1, 2, 3]}, "brats2023", (1, 2, 0)),
])
def test_region_channels(labels: dict[str, Any], option: str | None, order: tuple[int, ...]) -> None:
    out = output_map(dataset(labels), option)
    assert out.mode == "regions" and out.channel_order == order


def test_region_errors() -> None:
    with pytest.raises(ConfigError, match="region 'b' .* is none of"):
        output_map(dataset({"background": 0, "a": [3], "b": [1, 2], "c": [1, 2, 3]}), "brats2023")
    with pytest.raises(ConfigError, match="region 'blob' is not a name volrob knows"):
        output_map(dataset({"background": 0, "blob": [1, 2], "tumor core": [2, 3], "enhancing tumor": 3}))


def test_modalities() -> None:
    assert model_modalities(dataset(LABELS)) == ["t1", "t1ce", "t2", "flair"]
    brats23 = {"channel_names": {"0": "t1c", "1": "t1n", "2": "t2f", "3": "t2w"}}
    assert model_modalities(brats23) == ["t1ce", "t1", "flair", "t2"]
    assert model_modalities({"modality": {"0": "FLAIR", "1": "DWI"}}) == ["flair", "dwi"]
    assert model_modalities(brats23, ["a", "b", "c", "d"]) == ["a", "b", "c", "d"]
    with pytest.raises(ConfigError, match="repeated modalities"):
        model_modalities({"channel_names": {"0": "T1", "1": "t1n"}})


def test_each_fold_gets_its_own_weights_in_the_order_asked(pristine: Path) -> None:
    src = load_source(f"nnunet:{pristine}", options={"folds": [2, 0]})
    assert src.origin["folds"] == [2, 0]
    for net, fold in zip(src.predictor.network.folds, (2, 0), strict=True):
        saved = torch.load(pristine / f"fold_{fold}" / "checkpoint_final.pth", weights_only=False)["network_weights"]
        assert not net.training and net.state_dict().keys() == saved.keys()
        assert all(torch.equal(net.state_dict()[k], v) for k, v in saved.items())
