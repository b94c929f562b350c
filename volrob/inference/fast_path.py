"""The GPU fast path of a predictor: precision, memory format, cuDNN autotuning, compilation, stitching device.

Each option of ``inference`` (:class:`~volrob.inference.predictor.SlidingWindowConfig`) is resolved once per
device by :func:`resolve_fast_path`; on CPU every ``auto`` resolves to the plain float32 path, so CPU results do
not change. What each option does on CUDA:

- ``amp``: the network under autocast (see :mod:`volrob.inference.precision`); stitching, the loss, the input
  gradient and the attack state stay float32.
- ``channels_last`` (``auto`` = on CUDA for networks with 3D convolutions): weights and windows in
  ``torch.channels_last_3d``, the layout cuDNN's fastest 3D convolution kernels use under reduced precision.
- ``cudnn_benchmark`` (``auto`` = on CUDA): cuDNN times its algorithms for the window shape once and keeps the
  fastest; every window of a volume has the same shape, so the search is paid once.
- ``compile`` (``off`` by default): ``torch.compile`` of the network with that mode, built lazily per device.
- ``stitch_device`` (``auto``): the stitched output and the blending weights stay on the input's device unless
  the full-volume buffers would take more than :data:`STITCH_FRACTION` of the GPU's free memory; they are then kept
  in host memory and only windows travel (:func:`choose_stitch_device`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from volrob.errors import ConfigError
from volrob.inference.precision import amp_dtype, run_network

SWITCHES = ("auto", "on", "off")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
STITCH_FRACTION = 0.5  # the full-volume buffers may take at most this share of the GPU's free memory


def normalise_switch(value: Any, name: str) -> str:
    """``value`` as ``auto``/``on``/``off`` (YAML's booleans ``true``/``false`` read as ``on``/``off``)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in SWITCHES:
        raise ConfigError(f"{name} must be one of {list(SWITCHES)} (or true/false), got {value!r}")
    return str(value)


def normalise_compile(value: Any) -> str:
    """``inference.compile`` as one of :data:`COMPILE_MODES` (``true`` -> ``default``, ``false`` -> ``off``)."""
    if isinstance(value, bool):
        return "default" if value else "off"
    if value not in COMPILE_MODES:
        raise ConfigError(f"inference.compile must be one of {list(COMPILE_MODES)} (or true/false), got {value!r}")
    return str(value)


def has_conv3d(network: nn.Module) -> bool:
    """Whether the network has a 3D convolution (channels-last helps those only)."""
    return any(isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)) for m in network.modules())


@dataclass(frozen=True)
class FastPath:
    """The options of :mod:`volrob.inference.fast_path`, resolved for one device."""

    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    cudnn_benchmark: bool
    compile: str

    def describe(self) -> dict[str, Any]:
        """JSON-friendly record of what actually runs (kept beside results)."""
        return {"device": str(self.device), "amp_dtype": str(self.dtype).removeprefix("torch.") if self.dtype
                else "float32", "channels_last": self.channels_last, "cudnn_benchmark": self.cudnn_benchmark,
                "compile": self.compile}


def resolve_fast_path(*, amp: str, channels_last: str, cudnn_benchmark: str, compile: str,
                      device: torch.device, network: nn.Module) -> FastPath:
    """The fast path's settings for ``network`` on ``device`` (every ``auto`` is off on CPU)."""
    cuda = device.type == "cuda"
    cl = channels_last == "on" or (channels_last == "auto" and cuda and has_conv3d(network))
    bench = cuda and cudnn_benchmark in ("auto", "on")
    return FastPath(device, amp_dtype(amp, device), cl, bench, compile)


class FastNetwork(nn.Module):
    """``network`` run along a :class:`FastPath`: channels-last windows, autocast, float32 output.

    The wrapped network is shared, not copied: converting it to channels-last changes the caller's module in place
    (its numbers do not change). A compiled version is built on first use and kept beside the module.
    """

    def __init__(self, network: nn.Module, fast: FastPath) -> None:
        super().__init__()
        self.network, self.fast = network, fast
        self._compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        apply_layout(network, fast)

    def _call(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if self.fast.compile == "off":
            return self.network
        if self._compiled is None:
            self._compiled = compile_network(self.network, self.fast.compile)
        return self._compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast.channels_last and x.ndim == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        out = run_network(self._call(), x, self.fast.dtype)
        return out.contiguous() if self.fast.channels_last else out


def apply_layout(network: nn.Module, fast: FastPath) -> None:
    """Apply ``fast``'s layout to ``network`` in place (channels-last weights) and its cuDNN autotuning switch;
    the trainer calls this before wrapping the network in DDP, a :class:`FastNetwork` when it is built."""
    if fast.channels_last:
        network.to(memory_format=torch.channels_last_3d)
    if fast.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True


def compile_network(network: nn.Module, mode: str, *, backend: str = "inductor") -> Callable[..., torch.Tensor]:
    """``torch.compile(network)`` with ``mode`` and static shapes (every window has the ROI's shape)."""
    return torch.compile(network, mode=None if mode == "default" else mode, dynamic=False, backend=backend)


def stitch_bytes(batch: int, channels: int, out_channels: int, padded: Sequence[int], gradient: bool) -> int:
    """Bytes of the full-volume float32 buffers of one windowed pass: output and count map, plus the output
    gradient and the input gradient when a gradient is taken."""
    voxels = math.prod(int(s) for s in padded)
    per_voxel = batch * out_channels + 1 + ((batch * out_channels + batch * channels) if gradient else 0)
    return 4 * voxels * per_voxel


def choose_stitch_device(requested: str | None, x_device: torch.device, nbytes: int,
                         free_bytes: Callable[[torch.device], int] | None = None) -> torch.device:
    """Where stitching happens: ``requested`` when it names a device; for ``auto``/None the input's device,
    unless it is a GPU on which ``nbytes`` exceed :data:`STITCH_FRACTION` of its free memory (then the CPU)."""
    if requested not in (None, "auto"):
        return torch.device(str(requested))
    if x_device.type != "cuda":
        return x_device
    free = (free_bytes or _cuda_free)(x_device)
    return torch.device("cpu") if nbytes > STITCH_FRACTION * free else x_device


def _cuda_free(device: torch.device) -> int:
    return int(torch.cuda.mem_get_info(device)[0])
