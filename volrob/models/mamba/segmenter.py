"""U-Mamba-Bot style segmenter: a residual conv U-Net whose bottleneck tokens pass through Mamba layers.

Importing this module registers the model ``"umamba"`` (family ``"mamba"``) in :mod:`volrob.models.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from volrob.errors import ConfigError, DataError
from volrob.models.mamba.block import DIRECTIONS, ResidualMamba
from volrob.models.mamba.conv_blocks import ResidualConvBlock, UpBlock
from volrob.models.registry import check_common, check_divisible, merge_preset, register_model

NAME = "umamba"
UMAMBA_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"features": (8, 16, 32, 64), "depth": 1, "d_state": 8, "d_conv": 4, "expand": 2,
             "directions": "bidirectional"},
    "paper": {"features": (32, 64, 128, 256, 320), "depth": 2, "d_state": 16, "d_conv": 4, "expand": 2,
              "directions": "tri"},
}


def _check_int(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"model {NAME}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_features(features: object) -> tuple[int, ...]:
    """Channel counts per stage: a sequence of at least two positive integers."""
    if isinstance(features, str | bytes) or not isinstance(features, Sequence) or len(features) < 2:
        raise ConfigError(f"model {NAME}: features must be a list of at least 2 channel counts, got {features!r}")
    return tuple(_check_int("features", f, 1) for f in features)


class UMambaBot(nn.Module):
    """Conv encoder (one :class:`ResidualConvBlock` per stage, stride 2 after the first), ``depth``
    :class:`ResidualMamba` layers over the bottleneck tokens, transposed-conv decoder with skips, 1x1x1 head.

    Input (B, in_channels, D, H, W) with every side divisible by ``2 ** (len(features) - 1)``; output logits
    (B, out_channels, D, H, W).
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        features: Sequence[int] = UMAMBA_PRESETS["tiny"]["features"],
        depth: int = 1,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        directions: str = "tri",
    ) -> None:
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("out_channels", out_channels, 1)
        feats = _check_features(features)
        _check_int("depth", depth, 0)
        if directions not in DIRECTIONS:
            raise ConfigError(f"model {NAME}: directions must be one of {list(DIRECTIONS)}, got {directions!r}")
        self.in_channels, self.features = in_channels, feats
        self.factor = 2 ** (len(feats) - 1)
        self.encoder = nn.ModuleList(
            ResidualConvBlock(in_channels if i == 0 else feats[i - 1], f, stride=1 if i == 0 else 2)
            for i, f in enumerate(feats)
        )
        self.bottleneck = nn.ModuleList(
            ResidualMamba(feats[-1], d_state=_check_int("d_state", d_state, 1), d_conv=_check_int("d_conv", d_conv, 1),
                          expand=_check_int("expand", expand, 1), directions=directions)
            for _ in range(depth)
        )
        self.decoder = nn.ModuleList(UpBlock(feats[i + 1], feats[i]) for i in reversed(range(len(feats) - 1)))
        self.head = nn.Conv3d(feats[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, D, H, W) -> (B, out_channels, D, H, W) logits."""
        if x.dim() != 5 or x.shape[1] != self.in_channels or any(s % self.factor for s in x.shape[2:]):
            raise DataError(
                f"model {NAME}: input must be (B, {self.in_channels}, D, H, W) with sides divisible by "
                f"{self.factor}, got shape {list(x.shape)}"
            )
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        if len(self.bottleneck):
            b, c, *grid = x.shape
            tokens = x.flatten(2).transpose(1, 2)  # (B, L, C), D-major order
            for layer in self.bottleneck:
                tokens = layer(tokens, grid)
            x = tokens.transpose(1, 2).reshape(b, c, *grid)
        for up, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            x = up(x, skip)
        return self.head(x)


@register_model(
    NAME, family="mamba",
    description="U-Mamba-Bot style: conv U-Net with selective state-space layers over bottleneck tokens",
)
def build_umamba(
    *, in_channels: int = 4, out_channels: int = 3, roi_size: Sequence[int] = (96, 96, 96), preset: str = "tiny",
    **overrides: Any,
) -> UMambaBot:
    """Build :class:`UMambaBot` from a preset (``tiny`` or ``paper``); ``overrides`` replace preset keys
    (features, depth, d_state, d_conv, expand, directions). ``roi_size`` must be divisible by the down-sampling."""
    roi = check_common(NAME, in_channels=in_channels, out_channels=out_channels, roi_size=roi_size, preset=preset)
    cfg = merge_preset(NAME, UMAMBA_PRESETS, preset, overrides)
    check_divisible(NAME, roi, 2 ** (len(_check_features(cfg["features"])) - 1))
    return UMambaBot(in_channels=in_channels, out_channels=out_channels, **cfg)
