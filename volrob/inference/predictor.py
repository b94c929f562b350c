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
from volrob.inference.fast_path import (
    FastNetwork,
    FastPath,
    choose_stitch_device,
    normalise_compile,
    normalise_switch,
    resolve_fast_path,
    stitch_bytes,
)
from volrob.inference.normalise import FixedNorm, InputNorm
from volrob.inference.precision import normalise_amp
from volrob.inference.tiles import tile_plan
from volrob.inference.windowed_grad import WindowPlan, WindowPlanner, sliding_plan, stitch, windowed_inference
from volrob.utils.config import build_dataclass

BLEND_MODES = ("gaussian", "constant")
GRADIENT_MODES = ("exact", "autograd", "tiles")


@dataclass(frozen=True)
class SlidingWindowConfig:
    """Sliding-window options (MONAI's) and the fast path that runs them.

    ``gradient``: how the input gradient is formed over volumes larger than the ROI. ``exact`` (default): the
    autograd gradient of the blended output, recomputed window by window (memory of ``grad_batch_size`` windows'
    graphs; see :mod:`volrob.inference.windowed_grad`); ``autograd``: plain autograd through MONAI (keeps every
    window's graph); ``tiles``: the anchors' protocol, non-overlapping ROI tiles each run on its own and not
    blended, used whenever a graph to the input is recorded (the attack's forward); a forward without one
    (evaluation) is MONAI's blended sliding window, so tile-crafted attacks are scored with overlapping windows as
    published.

    Fast path (:mod:`volrob.inference.fast_path`; every ``auto`` is the plain float32 path on CPU):
    ``amp`` (``off``/``auto``/``bf16``/``fp16``) runs the network under autocast while stitching, the input
    gradient and the attack state stay float32; ``sw_batch_size`` windows per forward call and ``grad_batch_size``
    per recomputed backward call; ``channels_last`` and ``cudnn_benchmark`` (``auto``/``on``/``off``);
    ``compile`` (``off`` or a ``torch.compile`` mode); ``stitch_device``: ``auto`` keeps the stitched output on
    the input's device unless it would not fit in the GPU's free memory (then in host memory), or a device name.
    """

    roi_size: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.5
    mode: str = "gaussian"
    sw_batch_size: int = 2
    stitch_device: str | None = "auto"
    gradient: str = "exact"
    amp: str | bool = "off"  # stored as one of the strings; true/false read as auto/off
    grad_batch_size: int = 1
    channels_last: str | bool = "auto"
    cudnn_benchmark: str | bool = "auto"
    compile: str | bool = "off"

    def __post_init__(self) -> None:
        if len(self.roi_size) != 3 or min(self.roi_size) < 1:
            raise ConfigError(f"inference.roi_size must be three positive integers, got {list(self.roi_size)}")
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"inference.overlap must be in [0, 1), got {self.overlap}")
        if self.mode not in BLEND_MODES:
            raise ConfigError(f"inference.mode must be one of {list(BLEND_MODES)}, got {self.mode!r}")
        for name in ("sw_batch_size", "grad_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"inference.{name} must be an integer >= 1, got {value!r}")
        if self.gradient not in GRADIENT_MODES:
            raise ConfigError(f"inference.gradient must be one of {list(GRADIENT_MODES)}, got {self.gradient!r}")
        if self.stitch_device not in (None, "auto"):
            try:
                torch.device(str(self.stitch_device))
            except RuntimeError:
                raise ConfigError(f"inference.stitch_device must be auto or a device name such as cpu, got "
                                  f"{self.stitch_device!r}") from None
        object.__setattr__(self, "amp", normalise_amp(self.amp))
        object.__setattr__(self, "channels_last", normalise_switch(self.channels_last, "inference.channels_last"))
        object.__setattr__(self, "cudnn_benchmark",
                           normalise_switch(self.cudnn_benchmark, "inference.cudnn_benchmark"))
        object.__setattr__(self, "compile", normalise_compile(self.compile))

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
    The network's input normalisation (``norm``; by default the fixed ``(x - mean) / std`` per channel it was
    trained with), then the network on the whole input when it already has the ROI's size, else MONAI
    sliding-window inference; a model source may bring its own window layout (``planner``, e.g. nnU-Net's steps
    and Gaussian), which is then used for every forward, with or without a gradient. Differentiable in ``x``; over
    volumes larger than the ROI the input gradient follows ``window.gradient`` (default ``exact``: MONAI's
    numbers with the memory of one window's graph; the exact path needs ``network.eval()`` and does not accumulate
    parameter gradients, so a network in training mode gets plain autograd instead).
    """

    def __init__(self, network: nn.Module, *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, window: SlidingWindowConfig, output_mode: str = "regions",
                 norm: InputNorm | None = None, planner: WindowPlanner | None = None) -> None:
        super().__init__()
        if norm is None:
            if mean is None or std is None:
                raise ConfigError("normalisation: give mean and std, or a norm")
            norm = FixedNorm(mean, std)
        elif mean is not None or std is not None:
            raise ConfigError("normalisation: give mean and std, or a norm, not both")
        if output_mode not in OUTPUT_MODES:
            raise ConfigError(f"output_mode must be one of {list(OUTPUT_MODES)}, got {output_mode!r}")
        self.network = network
        self.window = window
        self.output_mode = output_mode
        self.norm = norm
        self.planner = planner
        self._fast: dict[str, FastNetwork] = {}

    @property
    def in_channels(self) -> int:
        """Input channels the predictor expects."""
        return int(self.norm.channels)

    def with_window(self, window: SlidingWindowConfig) -> Predictor:
        """A predictor over the same network, normalisation and window planner with other window settings."""
        out = Predictor(self.network, window=window, output_mode=self.output_mode, norm=self.norm,
                        planner=self.planner)
        return out.train(self.training)

    def fast_path(self, device: torch.device) -> FastPath:
        """The fast-path settings this predictor runs with on ``device``."""
        return self._fast_network(device).fast

    def _fast_network(self, device: torch.device) -> FastNetwork:
        key = str(device)
        if key not in self._fast:
            w = self.window
            self._fast[key] = FastNetwork(self.network, resolve_fast_path(
                amp=str(w.amp), channels_last=str(w.channels_last), cudnn_benchmark=str(w.cudnn_benchmark),
                compile=str(w.compile), device=device, network=self.network))
        return self._fast[key]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input normalisation (see :mod:`volrob.inference.normalise`)."""
        self._check_input(x)
        return self.norm(x)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ConfigError(f"predictor expects input (B, {self.in_channels}, D, H, W), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        w = self.window
        if tuple(x.shape[2:]) == tuple(w.roi_size) and self.planner is None:
            return self._net(self.normalise(x))
        records_grad = torch.is_grad_enabled() and x.requires_grad
        stitch = self._stitch_device(x, records_grad)
        if w.gradient == "tiles" and records_grad:
            plan = tile_plan(x.shape[2:], w.roi_size, device=x.device, stitch_device=stitch, dtype=x.dtype)
            return self._windowed(x, plan, stitch)
        if self.planner is not None or (w.gradient == "exact" and records_grad and not self.network.training):
            planner = self.planner or sliding_plan
            plan = planner(x.shape[2:], w.roi_size, w.overlap, w.mode, device=x.device, stitch_device=stitch,
                           dtype=x.dtype)
            return self._windowed(x, plan, stitch)
        out = sliding_window_inference(
            self.normalise(x), w.roi_size, w.sw_batch_size, self._net, overlap=w.overlap, mode=w.mode,
            sw_device=x.device, device=stitch,
        )
        return out if isinstance(out, torch.Tensor) else out[0]  # type: ignore[index]

    def _net(self, xn: torch.Tensor) -> torch.Tensor:
        """The network on one normalised input, along the fast path of its device (float32 out)."""
        return self._fast_network(xn.device)(xn)

    def _stitch_device(self, x: torch.Tensor, records_grad: bool) -> torch.device:
        """``window.stitch_device``; for ``auto``, host memory when the full-volume buffers would not fit."""
        roi = self.window.roi_size
        padded = [max(int(s), int(r)) for s, r in zip(x.shape[2:], roi, strict=True)]
        nbytes = stitch_bytes(x.shape[0], x.shape[1], max(x.shape[1], 3), padded, records_grad)
        return choose_stitch_device(self.window.stitch_device, x.device, nbytes)

    def _windowed(self, x: torch.Tensor, plan: WindowPlan, device: torch.device) -> torch.Tensor:
        # Without padding, each window is normalised on its own inside the network call (elementwise, so the
        # numbers are identical) and no normalised full-volume copy of ``x`` is kept; padding must be zero in the
        # normalised space, so a padded plan normalises the whole (small) volume first.
        fast = self._fast_network(x.device)
        if any(plan.pad) or not self.norm.pointwise:
            x, network = self.normalise(x), fast
        else:
            network = _Normalised(fast, self.norm)
        # A network in training mode (dropout, batch statistics) cannot be recomputed window by window, so the
        # gradient then flows by plain autograd over the same plan; parameter gradients flow only on that path.
        if (self.network.training and torch.is_grad_enabled()) or (
                self.window.gradient == "autograd" and torch.is_grad_enabled()):
            return stitch(network, x, plan, self.window.sw_batch_size, stitch_device=device)
        return windowed_inference(network, x, plan, self.window.sw_batch_size, stitch_device=device,
                                  grad_batch_size=self.window.grad_batch_size)


class _Normalised(nn.Module):
    """``network(norm(x))``: a pointwise normalisation applied window by window."""

    def __init__(self, network: nn.Module, norm: InputNorm) -> None:
        super().__init__()
        self.network, self.norm = network, norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.norm(x))
