"""Convolutional building blocks of the U-Mamba-Bot encoder and decoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn

NEGATIVE_SLOPE = 0.01


class ResidualConvBlock(nn.Module):
    """Two 3x3x3 conv + InstanceNorm (+ LeakyReLU) with a residual connection; ``stride=2`` down-samples.

    The shortcut is the identity when shape is kept, else a strided 1x1x1 conv + InstanceNorm.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.InstanceNorm3d(out_channels, affine=True),
            )
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, D, H, W) -> (B, out, D/stride, H/stride, W/stride)."""
        return self.act(self.body(x) + self.shortcut(x))


class UpBlock(nn.Module):
    """Transposed-conv up-sampling by 2, concatenation with the skip, then a :class:`ResidualConvBlock`."""

    def __init__(self, in_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, skip_channels, 2, stride=2)
        self.block = ResidualConvBlock(2 * skip_channels, skip_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """(B, in, d, h, w) and skip (B, skip, 2d, 2h, 2w) -> (B, skip, 2d, 2h, 2w)."""
        return self.block(torch.cat((self.up(x), skip), dim=1))

