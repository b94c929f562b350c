"""Bad bundle folders, weights and configs give one line naming the file and the problem; what cannot be mapped
exactly onto volrob's attack space is an error, never silently dropped; options select other files and meanings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.bundle_folder import TINY_SEGRESNET, brats_config, metadata, seeded_state, write_bundle

from volrob.errors import CheckpointError, ConfigError, VolrobError
from volrob.sources import load_source

STATE = seeded_state(TINY_SEGRESNET)


def _write(folder: Path, edit: Any = None, **kw: Any) -> Path:
    cfg = brats_config()
    if edit is not None:
        edit(cfg)
    kw.setdefault("meta", metadata())
    kw.setdefault("state", STATE)
    return write_bundle(folder, cfg, **kw)


def _fails(spec: str, kind: type[VolrobError], pattern: str, names: Path, **options: Any) -> str:
    with pytest.raises(kind, match=pattern) as info:
        load_source(spec, options=options)
    text = str(info.value)
    assert "\n" not in text and str(names) in text
    return text


def test_folder_problems(tmp_path: Path) -> None:
    _fails(f"bundle:{tmp_path / 'nowhere'}", ConfigError, "bundle folder does not exist", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    _fails(f"bundle:{tmp_path / 'empty'}", ConfigError, r"not a MONAI bundle: no configs/inference\.json",
           tmp_path / "empty")
    folder = _write(tmp_path / "b")
    (folder / "models" / "model.pt").unlink()
    _fails(f"bundle:{folder}", CheckpointError, "bundle weights file does not exist$", folder / "models" / "model.pt")
    (folder / "models" / "model.ts").write_bytes(b"torchscript")
    _fails(f"bundle:{folder}", CheckpointError, "model.ts is TorchScript, which is code", folder / "models")
    _fails(f"bundle:{folder}", ConfigError, "options.config: no file 'configs/other.json'", folder,
           config="configs/other.json")


class _Payload:
    """A pickled object: ``weights_only`` loading must refuse it."""


@pytest.mark.parametrize(("content", "pattern"), [
    (b"not a zip at all", "not a torch zip archive"),
    ("truncated", "corrupt"),
    ("object", "refused: holds pickled objects"),
    ("mismatch", r"weights do not fit network_def: .*size mismatch for convInit"),
    ("missing", r"weights do not fit network_def: .*Missing key"),
])
def test_bad_weights(tmp_path: Path, content: Any, pattern: str) -> None:
    folder = _write(tmp_path / "b")
    weights = folder / "models" / "model.pt"
    if content == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif content == "object":
        torch.save({"state_dict": STATE, "extra": _Payload()}, weights)
    elif content == "mismatch":
        torch.save(seeded_state(TINY_SEGRESNET | {"init_filters": 8}), weights)
    elif content == "missing":
        torch.save({k: v for i, (k, v) in enumerate(STATE.items()) if i}, weights)
    else:
        weights.write_bytes(content)
    _fails(f"bundle:{folder}", CheckpointError, pattern, weights)


def test_nested_state_dict_and_sha(tmp_path: Path) -> None:
    import hashlib

    folder = _write(tmp_path / "b")
    weights = folder / "models" / "model.pt"
    torch.save({"model": STATE}, weights)  # MONAI's CheckpointSaver nests the weights under "model"
    src = load_source(f"bundle:{folder}")
    assert src.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert src.origin["weights"] == str(weights)


def _swap(index: int, step: dict[str, Any]) -> Any:
    return lambda c: c["preprocessing"]["transforms"].__setitem__(index, step)


def _insert(index: int, step: dict[str, Any]) -> Any:
    return lambda c: c["preprocessing"]["transforms"].insert(index, step)


NORM = {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True}


@pytest.mark.parametrize(("edit", "pattern"), [
    (_swap(2, {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0, "a_max": 900, "b_min": 0,
               "b_max": 1, "clip": True}),
     r"preprocessing::transforms::2: ScaleIntensityRanged: maps fixed raw intensities"),
    (_insert(3, {"_target_": "RandFlipd", "keys": "image", "prob": 0.5}),
     r"preprocessing::transforms::3: RandFlipd: transform not supported \(supported: Orientationd, Spacingd"),
    (_insert(3, {"_target_": "mypackage.Normalise", "keys": "image"}),
     r"preprocessing::transforms::3: _target_ 'mypackage.Normalise' is not a class of monai.transforms"),
    (lambda c: c["preprocessing"]["transforms"].pop(2), "preprocessing: no intensity normalisation"),
    (_insert(3, {"_target_": "Spacingd", "keys": "image", "pixdim": 1.0}),
     r"transforms::3: Spacingd: comes after the intensity normalisation"),
    (_insert(2, {"_target_": "CropForegroundd", "keys": "image", "source_key": "image"}),
     r"CropForegroundd: allow_smaller=false \(MONAI's default\) pads past the image border"),
    (_insert(2, {"_target_": "Spacingd", "keys": "image", "pixdim": 1.0, "align_corners": True}),
     r"Spacingd: align_corners=True is not supported \(volrob follows MONAI's default False\)"),
    (_insert(2, {"_target_": "Spacingd", "keys": ["image", "label"], "pixdim": 1.0, "mode": ["nearest", "nearest"]}),
     r"Spacingd: mode 'nearest' for 'image' is not supported"),
    (_insert(2, {"_target_": "CropForegroundd", "keys": "image", "source_key": "image", "allow_smaller": True,
                 "select_fn": "$lambda x: x > 1"}), "CropForegroundd: a custom select_fn is not supported"),
    (lambda c: c["preprocessing"]["transforms"][2].update(channel_wise=False),
     "NormalizeIntensityd.*channel_wise=false pools the channels"),
    (lambda c: c["preprocessing"]["transforms"][2].update(subtrahend=[1, 2, 3, 4]),
     r"NormalizeIntensityd: subtrahend=\[1, 2, 3, 4\] is not supported"),
    (_insert(3, NORM), "NormalizeIntensityd: a second intensity normalisation"),
    (lambda c: c.update(inferer={"_target_": "SimpleInferer"}), "inferer: inferer SimpleInferer is not supported"),
    (lambda c: c.pop("inferer"), "inferer: no such entry; give the sliding-window ROI with --roi"),
    (lambda c: c["inferer"].update(sigma_scale=0.25), r"inferer::sigma_scale: 0.25 is not supported"),
    (lambda c: c["inferer"].update(overlap=1.5), "inferer: inference.overlap must be in"),
    (lambda c: c["inferer"].update(roi_size=[32, 32]), "inferer::roi_size: expected three positive integers"),
    (lambda c: c["postprocessing"]["transforms"][2].update(threshold=0.3),
     "AsDiscreted: threshold 0.3 after sigmoid: volrob reads regions as sigmoid > 0.5 only"),
    (lambda c: c["postprocessing"]["transforms"].insert(3, {"_target_": "KeepLargestConnectedComponentd",
                                                             "keys": "pred"}),
     "KeepLargestConnectedComponentd: changes the discrete prediction.*set options.output"),
    (lambda c: c["postprocessing"].update(transforms=c["postprocessing"]["transforms"][1:2]),
     "postprocessing: neither a sigmoid nor a softmax"),
    (lambda c: c["network_def"].update(in_channels=2), r"network_def::in_channels: 2, but 4 input channels"),
    (lambda c: c["network_def"].update(init_filters=3),
     r"network_def: SegResNet\(.*\) failed: .*num_channels \(3\) must be divisible"),
    (lambda c: c.pop("network_def"), "network_def: no such entry"),
])
def test_unmappable_config_is_one_line(tmp_path: Path, edit: Any, pattern: str) -> None:
    folder = _write(tmp_path / "b", edit)
    _fails(f"bundle:{folder}", ConfigError, pattern, folder / "configs" / "inference.json")


def test_invalid_json(tmp_path: Path) -> None:
    folder = _write(tmp_path / "b")
    (folder / "configs" / "inference.json").write_text('{"network_def": ')
    _fails(f"bundle:{folder}", ConfigError, r"not valid JSON \(line 1", folder / "configs" / "inference.json")
    (folder / "configs" / "metadata.json").write_text("[1, 2]")
    _write(folder)
    (folder / "configs" / "metadata.json").write_text("[1, 2]")
    _fails(f"bundle:{folder}", ConfigError, "expected a mapping", folder / "configs" / "metadata.json")


@pytest.mark.parametrize(("meta", "options", "pattern"), [
    (None, {}, r"input modalities are unknown .* give options.modalities"),
    (metadata(inputs=("MRI 1", "MRI 2", "MRI 3", "MRI 4")), {}, "are not distinct known modalities"),
    (metadata(inputs=("T1", "T1c", "T2")), {}, r"network_def::in_channels: 4, but 3 input channels"),
    (metadata(outputs=("Tumor core", "Whole tumor", "Edema")), {}, r"output channel\(s\) 2 \('Edema'\) are none"),
    (metadata(), {"labels": "msd"}, "options.labels: only for bundles with softmax/argmax outputs"),
    (metadata(), {"modalities": "t1"}, "options.modalities: expected a list"),
    (metadata(), {"output": "probabilities"}, r"options.output: expected one of \['regions', 'labels'\]"),
    (metadata(), {"trust": "yes"}, "options.trust: expected true or false"),
])
def test_meaning_of_channels(tmp_path: Path, meta: Any, options: dict[str, Any], pattern: str) -> None:
    folder = _write(tmp_path / "b", meta=meta)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_source(f"bundle:{folder}", options=options)
    assert "\n" not in str(info.value)


def test_channel_meaning_from_options_and_metadata(tmp_path: Path) -> None:
    """Modalities given as an option; regions reordered from metadata; softmax classes from a label convention."""
    folder = _write(tmp_path / "a", meta=metadata(inputs=("FLAIR", "T1w", "T1gd", "T2w"),
                                                  outputs=("whole tumour", "tumour core", "enhancing tumour")))
    src = load_source(f"bundle:{folder}")
    assert src.modalities == ["t1", "t1ce", "t2", "flair"]  # fed in volrob's order, reordered for the network
    assert src.origin["modalities"]["network"] == ["flair", "t1", "t1ce", "t2"]
    x = torch.rand(1, 4, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = src.predictor.network.network(src.predictor.normalise(x)[:, [3, 0, 1, 2]])
        torch.testing.assert_close(src.predictor(x), raw[:, [1, 0, 2]])
    src = load_source(f"bundle:{_write(tmp_path / 'b', meta=None)}", options={"modalities": ["t1", "t2", "a", "b"]})
    assert src.modalities == ["t1", "t2", "a", "b"] and src.origin["modalities"]["from"] == "options.modalities"
    assert src.origin["output_channels"]["from"].startswith("assumed: MONAI's BraTS convention")

    def softmax(c: dict[str, Any]) -> None:
        c["network_def"]["out_channels"] = 4
        c["postprocessing"]["transforms"][0] = {"_target_": "Activationsd", "keys": "pred", "softmax": True}
        c["postprocessing"]["transforms"][2] = {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}

    state = seeded_state(TINY_SEGRESNET | {"out_channels": 4})
    folder = _write(tmp_path / "c", softmax, meta=metadata(outputs=None), state=state)
    with pytest.raises(ConfigError, match=r"meaning of the output classes is unknown .*give options.labels"):
        load_source(f"bundle:{folder}")
    src = load_source(f"bundle:{folder}", options={"labels": "msd"})  # 1 oedema, 2 non-enhancing, 3 enhancing
    assert src.predictor.output_mode == "labels" and src.predictor.network.outputs == [0, 2, 1, 3]
    src = load_source(f"bundle:{folder}", options={"labels": ["background", "NCR", "ED", "ET"]})
    assert not hasattr(src.predictor.network, "outputs")  # the identity: no wrapper
    with pytest.raises(ConfigError, match=r"options.labels: convention brats2021 .* leaves output channel\(s\) \[3\]"):
        load_source(f"bundle:{folder}", options={"labels": "brats2021"})  # ET is 4: no 4th class in 4 channels


def test_yaml_config_other_config_and_window_override(tmp_path: Path) -> None:
    cfg = brats_config()
    folder = write_bundle(tmp_path / "y", cfg, meta=metadata(), state=STATE, fmt="yaml")
    src = load_source(f"bundle:{folder}", window={"roi_size": [16, 16, 16], "overlap": 0.25})
    assert src.origin["config"].endswith("inference.yaml") and src.origin["inferer"]["roi_size"] == [32, 32, 32]
    assert src.predictor.window.roi_size == (16, 16, 16) and src.predictor.window.overlap == 0.25
    other = copy.deepcopy(cfg)
    other["inferer"]["roi_size"] = [24, 24, 24]
    (folder / "configs" / "mine.json").write_text(json.dumps(other))
    src = load_source(f"bundle:{folder}", options={"config": "configs/mine.json"})
    assert src.predictor.window.roi_size == (24, 24, 24)
