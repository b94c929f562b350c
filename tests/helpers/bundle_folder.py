"""MONAI bundle folders written by tests: ``configs/inference.json``, ``configs/metadata.json`` and
``models/model.pt`` (a seeded random state dict of the config's network), tiny enough for CPU tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import yaml

TINY_SEGRESNET: dict[str, Any] = {
    "_target_": "SegResNet", "spatial_dims": 3, "init_filters": 4, "blocks_down": [1, 1], "blocks_up": [1],
    "norm": ["GROUP", {"num_groups": 2}], "in_channels": 4, "out_channels": 3, "dropout_prob": 0.2,
}


def brats_config(roi: int = 32) -> dict[str, Any]:
    """A BraTS-style inference config (as MONAI's brats_mri_segmentation, scaled down): SegResNet, per-channel
    z-score over non-zero voxels, sliding window, sigmoid + threshold; with the ``$`` entries such bundles carry
    around the parts volrob reads."""
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": copy.deepcopy(TINY_SEGRESNET),
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True},
        ]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [roi, roi, roi], "sw_batch_size": 2,
                    "overlap": 0.5},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image"},
            {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "$@bundle_root + '/eval'"},
        ]},
    }


def geometry_config(roi: int = 24) -> dict[str, Any]:
    """A config exercising the geometric transforms, min-max scaling, Gaussian blending and softmax outputs."""
    net = copy.deepcopy(TINY_SEGRESNET) | {"out_channels": 4}
    return {
        "network_def": net,
        "pixdim": [1.5, 1.25, 2.0],
        "preprocessing": {"_target_": "monai.transforms.Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": ["image"], "image_only": True},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": "@pixdim", "mode": "bilinear"},
            {"_target_": "CropForegroundd", "keys": "image", "source_key": "image", "margin": 2,
             "allow_smaller": True},
            {"_target_": "ScaleIntensityd", "keys": "image", "minv": -1.0, "maxv": 1.0, "channel_wise": True},
            {"_target_": "EnsureTyped", "keys": "image"},
        ]},
        "inferer": {"_target_": "monai.inferers.SlidingWindowInferer", "roi_size": roi, "sw_batch_size": 3,
                    "overlap": 0.25, "mode": "gaussian"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        ]},
    }


def metadata(inputs: tuple[str, ...] = ("T1", "T1c", "T2", "FLAIR"),
             outputs: tuple[str, ...] | None = ("Tumor core", "Whole tumor", "Enhancing tumor")) -> dict[str, Any]:
    """``configs/metadata.json`` with its ``network_data_format`` channel definitions."""
    fmt: dict[str, Any] = {"inputs": {"image": {"type": "image", "num_channels": len(inputs),
                                                "channel_def": {str(i): n for i, n in enumerate(inputs)}}}}
    if outputs is not None:
        fmt["outputs"] = {"pred": {"type": "image", "num_channels": len(outputs),
                                   "channel_def": {str(i): n for i, n in enumerate(outputs)}}}
    return {"version": "0.1.0", "network_data_format": fmt}


def seeded_state(network_def: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of ``network_def`` (a monai.networks.nets class with plain arguments) initialised under
    ``seed``."""
    import monai.networks.nets as nets

    args = {k: v for k, v in network_def.items() if not k.startswith("_")}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = getattr(nets, network_def["_target_"].rpartition(".")[2])(**args)
    return net.state_dict()


def write_bundle(folder: Path, config: dict[str, Any], *, meta: dict[str, Any] | None = None,
                 state: dict[str, torch.Tensor] | None = None, seed: int = 0, fmt: str = "json") -> Path:
    """Write a bundle folder: the config (``json`` or ``yaml``), the metadata (when given) and the weights
    (``state``, else :func:`seeded_state` of the config's ``network_def``)."""
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    if fmt == "json":
        (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    else:
        (folder / "configs" / "inference.yaml").write_text(yaml.safe_dump(config))
    if meta is not None:
        (folder / "configs" / "metadata.json").write_text(json.dumps(meta, indent=2))
    if state is None:
        state = seeded_state(config["network_def"], seed)
    torch.save(state, folder / "models" / "model.pt")
    return folder
