"""The predictor: attack-space input ``x`` in [0, 1] -> logits, with the training normalisation and sliding window.

Attacks, training, validation and evaluation all call the same ``Predictor`` so they see one function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from monai.inferers import sliding_window_inference
from torch import nn

from volrob.data.labels import OUTPUT_MODES
from volrob.errors import ConfigError
from volrob.utils.config import build_dataclass

BLEND_MODES = ("gaussian", "constant")


@dataclass(frozen=True)
class SlidingWindowConfig:
    """MONAI sliding-window options. ``stitch_device="cpu"`` keeps the stitched output off the GPU."""

    roi_size: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.5
    mode: str = "gaussian"
    sw_batch_size: int = 2
    stitch_device: str | None = None

    def __post_init__(self) -> None:
        if len(self.roi_size) != 3 or min(self.roi_size) < 1:
            raise ConfigError(f"inference.roi_size must be three positive integers, got {list(self.roi_size)}")
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"inference.overlap must be in [0, 1), got {self.overlap}")
        if self.mode not in BLEND_MODES:
            raise ConfigError(f"inference.mode must be one of {list(BLEND_MODES)}, got {self.mode!r}")
        if self.sw_batch_size < 1:
            raise ConfigError(f"inference.sw_batch_size must be >= 1, got {self.sw_batch_size}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["roi_size"] = list(self.roi_size)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlidingWindowConfig:
        return build_dataclass(cls, data, "inference")


class Predictor(nn.Module):
    """``x`` (B, C, *spatial) in [0, 1] -> logits (B, K, *spatial).

    ``output_mode`` says how to read the logits (``regions``: sigmoid TC/WT/ET; ``labels``: softmax over classes).
    ``(x - mean) / std`` per channel (the network's training normalisation), then the network on the whole input
    when it already has the ROI's size, else MONAI sliding-window inference. Differentiable in ``x``.
    """

    def __init__(self, network: nn.Module, *, mean: Sequence[float], std: Sequence[float],
                 window: SlidingWindowConfig, output_mode: str = "regions") -> None:
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ConfigError("normalisation: mean and std need one entry per channel and std > 0")
        if output_mode not in OUTPUT_MODES:
            raise ConfigError(f"output_mode must be one of {list(OUTPUT_MODES)}, got {output_mode!r}")
        self.network = network
        self.window = window
        self.output_mode = output_mode
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input normalisation (a fixed per-channel affine map)."""
        if x.ndim != 5 or x.shape[1] != self.mean.shape[1]:
            raise ConfigError(f"predictor expects input (B, {self.mean.shape[1]}, D, H, W), got {tuple(x.shape)}")
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.normalise(x)
        if tuple(x.shape[2:]) == tuple(self.window.roi_size):
            return self.network(xn)
        w = self.window
        out = sliding_window_inference(
            xn, w.roi_size, w.sw_batch_size, self.network, overlap=w.overlap, mode=w.mode,
            sw_device=x.device, device=torch.device(w.stitch_device) if w.stitch_device else x.device,
        )
        return out if isinstance(out, torch.Tensor) else out[0]  # type: ignore[index]
