"""MONAI networks in the registry: UNet, UNETR, SwinUNETR, SegResNet (3D, ``tiny`` and ``paper`` presets)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.networks import nets
from torch import nn

from volrob.errors import ConfigError
from volrob.models.registry import check_common, check_divisible, merge_preset, register_model

_UNET: dict[str, dict[str, Any]] = {
    "tiny": {"channels": (8, 16, 32, 64), "strides": (2, 2, 2), "num_res_units": 1, "norm": "instance", "dropout": 0.0},
    "paper": {"channels": (16, 32, 64, 128, 256), "strides": (2, 2, 2, 2), "num_res_units": 2, "norm": "instance",
              "dropout": 0.0},
}
_UNETR: dict[str, dict[str, Any]] = {
    "tiny": {"feature_size": 8, "hidden_size": 96, "mlp_dim": 192, "num_heads": 4, "dropout_rate": 0.0},
    "paper": {"feature_size": 16, "hidden_size": 768, "mlp_dim": 3072, "num_heads": 12, "dropout_rate": 0.0},
}
_SWIN: dict[str, dict[str, Any]] = {
    "tiny": {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (3, 6, 12, 24), "window_size": 4,
             "dropout_path_rate": 0.0, "use_v2": False},
    "paper": {"feature_size": 48, "depths": (2, 2, 2, 2), "num_heads": (3, 6, 12, 24), "window_size": 7,
              "dropout_path_rate": 0.0, "use_v2": False},
}
_SEGRESNET: dict[str, dict[str, Any]] = {
    "tiny": {"init_filters": 8, "blocks_down": (1, 1, 1, 1), "blocks_up": (1, 1, 1), "dropout_prob": None},
    "paper": {"init_filters": 16, "blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1), "dropout_prob": 0.2},
}
UNETR_PATCH = 16


@register_model("unet", family="cnn", description="MONAI residual 3D UNet")
def build_unet(
    *, in_channels: int = 4, out_channels: int = 3, roi_size: Sequence[int] = (96, 96, 96), preset: str = "tiny",
    **overrides: Any,
) -> nn.Module:
    """MONAI ``UNet``; the ROI must be divisible by the product of the strides."""
    roi = check_common("unet", in_channels=in_channels, out_channels=out_channels, roi_size=roi_size, preset=preset)
    cfg = merge_preset("unet", _UNET, preset, overrides)
    if len(cfg["strides"]) != len(cfg["channels"]) - 1:
        raise ConfigError("model unet: strides must have one entry fewer than channels")
    factor = 1
    for s in cfg["strides"]:
        factor *= int(s)
    check_divisible("unet", roi, factor)
    return nets.UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **cfg)


@register_model("unetr", family="transformer", description="MONAI UNETR (ViT encoder, fixed input size = ROI)",
                fixed_input=True)
def build_unetr(
    *, in_channels: int = 4, out_channels: int = 3, roi_size: Sequence[int] = (96, 96, 96), preset: str = "tiny",
    **overrides: Any,
) -> nn.Module:
    """MONAI ``UNETR`` built for ``img_size == roi_size`` (patch 16, so each side divisible by 16)."""
    roi = check_common("unetr", in_channels=in_channels, out_channels=out_channels, roi_size=roi_size, preset=preset)
    cfg = merge_preset("unetr", _UNETR, preset, overrides)
    check_divisible("unetr", roi, UNETR_PATCH)
    if cfg["hidden_size"] % cfg["num_heads"]:
        raise ConfigError(f"model unetr: hidden_size {cfg['hidden_size']} must be divisible by num_heads "
                          f"{cfg['num_heads']}")
    return nets.UNETR(in_channels=in_channels, out_channels=out_channels, img_size=roi, spatial_dims=3, **cfg)


@register_model("swinunetr", family="transformer", description="MONAI SwinUNETR (Swin transformer encoder)")
def build_swinunetr(
    *, in_channels: int = 4, out_channels: int = 3, roi_size: Sequence[int] = (96, 96, 96), preset: str = "tiny",
    **overrides: Any,
) -> nn.Module:
    """MONAI ``SwinUNETR``; every ROI side must be a multiple of 32 and at least 64, feature_size of 12."""
    roi = check_common("swinunetr", in_channels=in_channels, out_channels=out_channels, roi_size=roi_size,
                       preset=preset)
    cfg = merge_preset("swinunetr", _SWIN, preset, overrides)
    check_divisible("swinunetr", roi, 32)
    if min(roi) < 64:
        raise ConfigError(f"model swinunetr: roi_size {list(roi)} must be at least 64 on every side (a 32 side leaves "
                          "a single bottleneck voxel, which instance norm rejects)")
    if cfg["feature_size"] % 12:
        raise ConfigError(f"model swinunetr: feature_size must be divisible by 12, got {cfg['feature_size']}")
    return nets.SwinUNETR(in_channels=in_channels, out_channels=out_channels, spatial_dims=3, **cfg)


@register_model("segresnet", family="cnn", description="MONAI SegResNet (residual encoder, light decoder)")
def build_segresnet(
    *, in_channels: int = 4, out_channels: int = 3, roi_size: Sequence[int] = (96, 96, 96), preset: str = "tiny",
    **overrides: Any,
) -> nn.Module:
    """MONAI ``SegResNet``; the ROI must be divisible by 2**(len(blocks_down) - 1)."""
    roi = check_common("segresnet", in_channels=in_channels, out_channels=out_channels, roi_size=roi_size,
                       preset=preset)
    cfg = merge_preset("segresnet", _SEGRESNET, preset, overrides)
    check_divisible("segresnet", roi, 2 ** (len(cfg["blocks_down"]) - 1))
    return nets.SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **cfg)
