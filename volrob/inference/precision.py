"""Mixed precision for the network while the input, its gradient and the attack state stay float32.

``amp`` modes (``inference.amp``): ``off`` (float32 everywhere), ``auto`` (on CUDA: bfloat16 where the device
supports it, else float16; float32 on CPU), ``bf16`` and ``fp16`` (that autocast dtype on any device, CPU included,
which is how the CPU tests check the dtype rules). ``true``/``false`` (earlier configs) read as ``auto``/``off``.

Rules: the network runs under ``torch.autocast``; its output is cast back to the input's dtype before anything is
stitched, blended or differentiated, so the attack sees float32 logits and computes a float32 input gradient.

float16 has a narrow exponent range: a segmentation loss averaged over millions of voxels gives per-voxel output
gradients near 1e-8, below float16's smallest subnormal, so an unscaled float16 backward returns zeros. Under
``fp16`` every backward through the network is therefore scaled: the output gradient is multiplied by a power of
two that brings its largest magnitude to ``2**GRAD_TARGET_EXP`` before it enters the network and the input gradient
is divided by the same factor after (exact: powers of two). A non-finite input gradient raises
:class:`GradientOverflow`; the windowed exact gradient then recomputes that window in float32.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import torch

from volrob.errors import ConfigError

AMP_MODES = ("off", "auto", "bf16", "fp16")
GRAD_TARGET_EXP = 8  # the scaled output gradient's largest magnitude: 2**8, far from float16's 65504
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_FULL_PRECISION: ContextVar[bool] = ContextVar("volrob_full_precision", default=False)


class GradientOverflow(FloatingPointError):
    """A float16 backward through the network produced a non-finite input gradient."""


def normalise_amp(value: Any, name: str = "inference.amp") -> str:
    """``value`` as one of :data:`AMP_MODES` (``True`` -> ``auto``, ``False`` -> ``off``)."""
    if isinstance(value, bool):
        return "auto" if value else "off"
    if value not in AMP_MODES:
        raise ConfigError(f"{name} must be one of {list(AMP_MODES)} (or true/false), got {value!r}")
    return str(value)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``mode`` on ``device``, or None for float32."""
    mode = normalise_amp(mode)
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _DTYPES[mode]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` on ``device`` with ``dtype``; a no-op for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Within this block :func:`run_network` ignores its autocast dtype (float32 recomputation)."""
    token = _FULL_PRECISION.set(True)
    try:
        yield
    finally:
        _FULL_PRECISION.reset(token)


class _Scale:
    """The factor of one scaled backward, set by the output side and read by the input side."""

    value: float = 1.0


class _CastScalingGrad(torch.autograd.Function):
    """The network's output cast to the caller's dtype (a new tensor, so callers may modify it in place, as MONAI's
    stitching does); the backward scales the incoming gradient before it is cast back into the network's dtype."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, scale: _Scale, dtype: torch.dtype) -> torch.Tensor:
        ctx.scale, ctx.dtype = scale, y.dtype
        return y.to(dtype, copy=True)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        amax = float(g.detach().abs().max()) if g.numel() else 0.0
        exp = GRAD_TARGET_EXP - math.ceil(math.log2(amax)) if amax > 0 and math.isfinite(amax) else 0
        ctx.scale.value = math.ldexp(1.0, exp)
        return (g * ctx.scale.value).to(ctx.dtype), None, None


class _UnscaleInputGrad(torch.autograd.Function):
    """Identity on the network's input; the backward divides by the factor the output side chose."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: _Scale) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        if not bool(torch.isfinite(g).all()):
            raise GradientOverflow("the float16 backward overflowed; use inference.amp=bf16 or off")
        return g / ctx.scale.value, None


def run_network(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                dtype: torch.dtype | None) -> torch.Tensor:
    """``network(x)`` under autocast ``dtype``, returned in ``x``'s dtype; float16 input gradients are scaled."""
    if dtype is None or _FULL_PRECISION.get():
        return network(x)
    scaled = dtype == torch.float16 and torch.is_grad_enabled() and x.requires_grad
    scale = _Scale()
    xin = _UnscaleInputGrad.apply(x, scale) if scaled else x
    with autocast(x.device, dtype):
        y = network(xin)
    return _CastScalingGrad.apply(y, scale, x.dtype) if scaled else y.to(x.dtype)
