"""A small nnU-Net v2 trained-model folder written the way nnU-Net writes one (plans.json, dataset.json,
``fold_k/checkpoint_final.pth`` with the trainer's keys and numpy scalars), and NIfTI cases to feed it.

Needs nnunetv2's network library (dynamic_network_architectures) to build the network whose weights are saved.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

CHANNELS: dict[str, str] = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
LABELS: dict[str, Any] = {"background": 0, "edema": 1, "non-enhancing": 2, "enhancing": 3}  # nnU-Net's Dataset137
REGIONS: dict[str, Any] = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}
FEATURES = (4, 8, 16)


def architecture(channels: int = 3) -> dict[str, Any]:
    """The plans' ``architecture`` entry of a tiny 3-stage PlainConvUNet."""
    n = len(FEATURES)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n, "features_per_stage": list(FEATURES), "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * n, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            "n_conv_per_stage": [1] * n, "n_conv_per_stage_decoder": [1] * (n - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plans(patch: Sequence[int], spacing: Sequence[float], transpose: Sequence[int],
          normalization: str = "ZScoreNormalization", use_mask: bool = True) -> dict[str, Any]:
    """plans.json with one ``3d_fullres`` configuration (patch and spacing in nnU-Net's axis order)."""
    chans = len(CHANNELS)
    backward = [int(i) for i in np.argsort(transpose)]
    intensity = {"max": 1000.0, "mean": 300.0, "median": 280.0, "min": 1.0, "percentile_00_5": 10.0,
                 "percentile_99_5": 900.0, "std": 120.0}
    return {
        "dataset_name": "Dataset999_VolrobTiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing), "original_median_shape_after_transp": [40, 40, 40],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": list(transpose), "transpose_backward": backward,
        "configurations": {
            "2d": {"data_identifier": "nnUNetPlans_2d", "preprocessor_name": "DefaultPreprocessor",
                   "batch_size": 2, "patch_size": list(patch[1:]), "median_image_size_in_voxels": [40, 40],
                   "spacing": list(spacing[1:]), "normalization_schemes": [normalization] * chans,
                   "use_mask_for_norm": [use_mask] * chans,
                   "architecture": {**architecture(), "arch_kwargs": {
                       **architecture()["arch_kwargs"], "conv_op": "torch.nn.modules.conv.Conv2d",
                       "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]],
                       "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d"}},
                   "batch_dice": True},
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2, "patch_size": list(patch), "median_image_size_in_voxels": [40, 40, 40],
                "spacing": list(spacing), "normalization_schemes": [normalization] * chans,
                "use_mask_for_norm": [use_mask] * chans,
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                       "force_separate_z": None},
                "architecture": architecture(), "batch_dice": False},
        },
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): dict(intensity) for c in range(chans)},
    }


def dataset(labels: dict[str, Any]) -> dict[str, Any]:
    """dataset.json: four BraTS channels, ``labels`` (with ``regions_class_order`` when they are regions)."""
    out: dict[str, Any] = {"channel_names": dict(CHANNELS), "labels": labels, "numTraining": 6,
                           "file_ending": ".nii.gz"}
    if any(isinstance(v, list) for v in labels.values()):
        out["regions_class_order"] = [1, 2, 3]
    return out


def tiny_network(out_channels: int) -> torch.nn.Module:
    """The network of :func:`architecture` (deep supervision on, as nnU-Net trains it)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    kw = architecture()["arch_kwargs"]
    return PlainConvUNet(
        input_channels=len(CHANNELS), n_stages=kw["n_stages"], features_per_stage=kw["features_per_stage"],
        conv_op=torch.nn.Conv3d, kernel_sizes=kw["kernel_sizes"], strides=kw["strides"],
        n_conv_per_stage=kw["n_conv_per_stage"], num_classes=out_channels,
        n_conv_per_stage_decoder=kw["n_conv_per_stage_decoder"], conv_bias=True, norm_op=torch.nn.InstanceNorm3d,
        norm_op_kwargs=kw["norm_op_kwargs"], nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True},
        deep_supervision=True)


def seeded_weights(net: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of ``net`` drawn from one seeded generator: He-normal convolutions, jittered norms, and the
    output bias centred on a seeded random probe so that every class wins somewhere."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    drawn: dict[int, torch.Tensor] = {}  # a layer registered under two names (nnU-Net's all_modules) shares its values
    for key, value in net.state_dict(keep_vars=True).items():
        if id(value) in drawn:
            out[key] = drawn[id(value)]
            continue
        if value.ndim == 5:
            fan_in = value[0].numel()
            new = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith("weight"):
            new = 1 + 0.2 * torch.randn(value.shape, generator=g)
        else:
            new = 0.3 * torch.randn(value.shape, generator=g)
        out[key] = drawn[id(value)] = new
    net.load_state_dict(out)
    with torch.no_grad():
        y = net.eval()(torch.randn((1, len(CHANNELS), 16, 16, 16), generator=g))
    y = y[0] if isinstance(y, (list, tuple)) else y  # deep supervision: full resolution first
    last = max((k for k in out if k.startswith("decoder.seg_layers.") and k.endswith(".bias")),
               key=lambda k: int(k.split(".")[2]))
    out[last] = out[last] - y.mean((0, 2, 3, 4))
    return {k: v.detach().clone() for k, v in out.items()}


def checkpoint(weights: dict[str, torch.Tensor], plans_dict: dict[str, Any], dataset_dict: dict[str, Any], fold: int,
               mirror_axes: tuple[int, ...] | None) -> dict[str, Any]:
    """What nnU-Net's trainer saves (``save_checkpoint``): weights, optimizer state, logging with numpy scalars."""
    params = [torch.nn.Parameter(v.clone()) for v in weights.values() if v.is_floating_point()]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    dice = [np.float64(0.5), np.float64(0.6), np.float64(0.7)]
    logging = {"mean_fg_dice": [np.float64(np.mean(dice))], "ema_fg_dice": [np.float64(np.mean(dice))],
               "dice_per_class_or_region": [dice], "train_losses": [np.float64(-0.2)],
               "val_losses": [np.float32(-0.1)], "lrs": [0.01], "epoch_start_timestamps": [1.7e9],
               "epoch_end_timestamps": [1.7e9 + 60]}
    return {
        "network_weights": weights, "optimizer_state": opt.state_dict(), "grad_scaler_state": None,
        "logging": logging, "_best_ema": np.float64(0.6), "current_epoch": 1,
        "init_args": {"plans": plans_dict, "configuration": "3d_fullres", "fold": fold, "dataset_json": dataset_dict,
                      "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": mirror_axes,
    }


def write_trained_folder(root: Path, *, folds: Sequence[int] = (0,), regions: bool = False,
                         patch: Sequence[int] = (16, 16, 16), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                         transpose: Sequence[int] = (0, 1, 2), mirror_axes: tuple[int, ...] | None = (0, 1, 2),
                         normalization: str = "ZScoreNormalization", use_mask: bool = True, seed: int = 0) -> Path:
    """``root/Dataset999_VolrobTiny/nnUNetTrainer__nnUNetPlans__3d_fullres`` with one checkpoint per fold
    (different seeded weights per fold); returns the folder."""
    folder = root / "Dataset999_VolrobTiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    plans_dict = plans(patch, spacing, transpose, normalization, use_mask)
    dataset_dict = dataset(REGIONS if regions else LABELS)
    (folder / "plans.json").write_text(json.dumps(plans_dict, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset_dict, indent=2))
    net = tiny_network(3 if regions else 4)
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        ckpt = checkpoint(seeded_weights(net, seed + 100 * fold), plans_dict, dataset_dict, fold, mirror_axes)
        torch.save(ckpt, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


def write_case(folder: Path, case: str, shape: Sequence[int], spacing: Sequence[float], seed: int,
               margin: int = 2) -> list[Path]:
    """Four float32 NIfTI channels ``case_000k.nii.gz`` (nnU-Net's naming) of a smooth random "brain" (zero outside
    a box ``margin`` voxels in, with a zero hole inside), nibabel voxel order, affine ``diag(spacing)`` shifted."""
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.5]
    inside = np.zeros(shape, dtype=bool)
    inside[tuple(slice(margin, s - margin) for s in shape)] = True
    centre = tuple(s // 2 for s in shape)
    inside[centre] = False  # a hole: nnU-Net's mask fills it
    paths = []
    coarse = [max(s // 4, 2) for s in shape]
    for c in range(len(CHANNELS)):
        low = g.random(coarse)
        smooth = np.kron(low, np.ones([int(np.ceil(s / k)) for s, k in zip(shape, coarse, strict=True)]))
        smooth = smooth[tuple(slice(0, s) for s in shape)]
        img = np.where(inside, 100 + 800 * smooth + 40 * g.random(shape), 0).astype(np.float32)
        path = folder / f"{case}_{c:04d}.nii.gz"
        nib.save(nib.Nifti1Image(img, affine), str(path))
        paths.append(path)
    return paths
