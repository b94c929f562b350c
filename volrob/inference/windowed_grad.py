"""Sliding-window inference with an exact, memory-bounded input gradient.

Stitching is linear: ``out = crop(sum_w place_w(imp * net(x_w)) / count)`` with ``count = sum_w place_w(imp)``.
So the gradient of any loss on ``out`` is ``sum_w place_w(vjp(net, x_w, g_w * imp / count_w))``: the forward runs
every window without a graph and keeps only the input; the backward recomputes the windows (one at a time by
default) with a graph and back-propagates each one's weighted share of the output gradient. Same numbers as
autograd through ``monai.inferers.sliding_window_inference``, with the memory of a single window's graph.

Full-volume buffers, kept to the minimum: the forward holds the stitched output and the ``count`` map (one
channel); the backward reads the output gradient in place (weights ``imp / count_w`` are formed per window, never a
divided full-volume copy) and accumulates the input gradient into one buffer, which is returned as is when no
padding was needed. Per-window preprocessing (e.g. the predictor's normalisation) can live inside ``network`` so
that no normalised full-volume copy of the input exists at all.

Limits: only the input gradient flows. Parameter gradients are not accumulated through this path (attacks do
not need them; training uses ROI-sized crops, which bypass it), and the network must be deterministic in its
forward (``eval()`` mode: no dropout, no batch statistics), since each window is evaluated twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map, dense_patch_slices
from torch import nn

from volrob.errors import ConfigError
from volrob.inference.precision import GradientOverflow, full_precision

Window = tuple[int, tuple[slice, ...]]  # (batch index, spatial slices in the padded volume)


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows lie and how they are blended, shared by the forward and the backward pass.

    ``pad`` is in ``F.pad`` order (last axis first); ``slices`` index the padded volume; ``importance`` has shape
    ``(1, 1, *roi)``; ``count`` is the summed importance over the padded volume, shape ``(1, 1, *padded)``.
    """

    image_size: tuple[int, ...]
    roi_size: tuple[int, ...]
    pad: tuple[int, ...]
    padded_size: tuple[int, ...]
    slices: tuple[tuple[slice, ...], ...]
    importance: torch.Tensor
    count: torch.Tensor

    @property
    def crop(self) -> tuple[slice, ...]:
        """Spatial slices of the padded volume that hold the original image."""
        n = len(self.image_size)
        starts = [self.pad[2 * (n - 1 - i)] for i in range(n)]
        return tuple(slice(s, s + size) for s, size in zip(starts, self.image_size, strict=True))

    def windows(self, batch_size: int) -> list[Window]:
        """Every window of a batch, in MONAI's order (sample-major, then the patch order)."""
        return [(b, s) for b in range(batch_size) for s in self.slices]


class WindowPlanner(Protocol):
    """Builds the window plan of an image: ``(image_size, roi_size, overlap, mode, *, device, stitch_device, dtype)``
    (:func:`sliding_plan` is MONAI's layout; a model source may bring its own, e.g. nnU-Net's)."""

    def __call__(self, image_size: Sequence[int], roi_size: Sequence[int], overlap: float, mode: str, *,
                 device: torch.device, stitch_device: torch.device, dtype: torch.dtype) -> WindowPlan: ...


def count_map(slices: Sequence[tuple[slice, ...]], importance: torch.Tensor, size: Sequence[int],
               device: torch.device) -> torch.Tensor:
    count = torch.zeros((1, 1, *size), dtype=importance.dtype, device=device)
    imp = importance.to(device)
    for s in slices:
        count[(slice(None), slice(None), *s)] += imp
    return count


def sliding_plan(image_size: Sequence[int], roi_size: Sequence[int], overlap: float, mode: str, *,
                 device: torch.device, stitch_device: torch.device, dtype: torch.dtype) -> WindowPlan:
    """MONAI's sliding-window layout: centred zero padding up to the ROI, scan interval ``int(roi*(1-overlap))``."""
    image_size, roi_size = tuple(int(s) for s in image_size), tuple(int(r) for r in roi_size)
    pad: list[int] = []
    for i in reversed(range(len(image_size))):
        diff = max(roi_size[i] - image_size[i], 0)
        pad += [diff // 2, diff - diff // 2]
    padded = tuple(max(s, r) for s, r in zip(image_size, roi_size, strict=True))
    interval = tuple(r if r == s else max(int(r * (1 - overlap)), 1) for s, r in zip(padded, roi_size, strict=True))
    slices = tuple(tuple(s) for s in dense_patch_slices(padded, roi_size, interval))
    imp = compute_importance_map(roi_size, mode=mode, sigma_scale=0.125, device=device, dtype=dtype)
    imp = imp.to(device=device, dtype=dtype)[None, None]
    return WindowPlan(image_size, roi_size, tuple(pad), padded, slices, imp,
                      count_map(slices, imp, padded, stitch_device))


def _batches(windows: list[Window], sw_batch_size: int) -> Iterator[list[Window]]:
    for i in range(0, len(windows), sw_batch_size):
        yield windows[i : i + sw_batch_size]


def _gather(xp: torch.Tensor, batch: list[Window]) -> torch.Tensor:
    return torch.cat([xp[(slice(b, b + 1), slice(None), *s)] for b, s in batch])


def stitch(network: nn.Module, x: torch.Tensor, plan: WindowPlan, sw_batch_size: int, *,
           stitch_device: torch.device) -> torch.Tensor:
    """Blended window outputs over ``x``, as MONAI stitches them; plain autograd when grad mode is on."""
    xp = F.pad(x, list(plan.pad)) if any(plan.pad) else x
    out: torch.Tensor | None = None
    imp = plan.importance.to(x.dtype)
    for batch in _batches(plan.windows(x.shape[0]), sw_batch_size):
        y = network(_gather(xp, batch))
        y = (y.to(x.dtype) * imp).to(stitch_device)
        if out is None:
            out = torch.zeros((x.shape[0], y.shape[1], *plan.padded_size), dtype=x.dtype, device=stitch_device)
        for (b, s), part in zip(batch, y, strict=True):
            out[(slice(b, b + 1), slice(None), *s)] += part
    assert out is not None
    out = out.div_(plan.count.to(out.dtype)) if not out.requires_grad else out / plan.count.to(out.dtype)
    return out[(slice(None), slice(None), *plan.crop)]


def _window_vjp(network: nn.Module, xp: torch.Tensor, g: torch.Tensor, batch: list[Window],
                plan: WindowPlan) -> torch.Tensor:
    """Input gradient of one recomputed window batch; its graph dies when this function returns. A float16
    backward that overflows is recomputed in float32 (see :mod:`volrob.inference.precision`)."""
    win = _gather(xp, batch).detach().requires_grad_(True)
    imp = plan.importance.to(device=g.device, dtype=g.dtype)
    count = plan.count.to(device=g.device, dtype=g.dtype)
    gw = torch.cat([g[(slice(b, b + 1), slice(None), *s)] * (imp / count[(slice(None), slice(None), *s)])
                    for b, s in batch]).to(win.device)
    gw = gw.to(win.dtype)
    try:
        return _vjp(network, win, gw)
    except GradientOverflow:
        with full_precision():
            return _vjp(network, win, gw)


def _vjp(network: nn.Module, win: torch.Tensor, gw: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        y = network(win).to(win.dtype)
        (grad,) = torch.autograd.grad(y, win, gw)
    return grad


class _WindowedInference(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, network: nn.Module, plan: WindowPlan, sw_batch_size: int,
                stitch_device: torch.device, grad_batch_size: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.network, ctx.plan, ctx.grad_batch_size = network, plan, grad_batch_size
        return stitch(network, x.detach(), plan, sw_batch_size, stitch_device=stitch_device)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        plan: WindowPlan = ctx.plan
        acc = torch.promote_types(x.dtype, torch.float32)  # the input gradient accumulates in at least float32
        padded = any(plan.pad)
        g = F.pad(grad_out.to(acc), list(plan.pad)) if padded else grad_out.to(acc)
        del grad_out
        xp = F.pad(x.detach(), list(plan.pad)) if padded else x.detach()
        dxp = torch.zeros(xp.shape, dtype=acc, device=xp.device)
        for batch in _batches(plan.windows(x.shape[0]), ctx.grad_batch_size):
            grad = _window_vjp(ctx.network, xp, g, batch, plan)
            for (b, s), part in zip(batch, grad, strict=True):
                dxp[(slice(b, b + 1), slice(None), *s)] += part
            del grad
        dx = dxp[(slice(None), slice(None), *plan.crop)] if padded else dxp
        return dx.to(x.dtype), None, None, None, None, None


def windowed_inference(network: nn.Module, x: torch.Tensor, plan: WindowPlan, sw_batch_size: int, *,
                       stitch_device: torch.device | None = None, grad_batch_size: int = 1) -> torch.Tensor:
    """Stitched logits of ``network`` over ``x`` along ``plan``, differentiable in ``x`` with bounded memory.

    The forward runs ``sw_batch_size`` windows per network call (as MONAI does, so its output is bit-identical);
    the backward recomputes ``grad_batch_size`` windows per call, which bounds the peak memory of a gradient to
    that many windows' graphs (one by default).

    Mixed precision lives in ``network`` (the predictor passes its :class:`~volrob.inference.fast_path.FastNetwork`,
    whose output is float32); stitching and the input gradient stay in float32. Parameter gradients are not
    accumulated (see the module docstring).
    """
    dev = stitch_device or x.device
    if not (torch.is_grad_enabled() and x.requires_grad):
        return stitch(network, x, plan, sw_batch_size, stitch_device=dev)
    if grad_batch_size < 1:
        raise ConfigError(f"grad_batch_size must be an integer >= 1, got {grad_batch_size}")
    return _WindowedInference.apply(x, network, plan, sw_batch_size, dev, grad_batch_size)
