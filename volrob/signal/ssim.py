"""Structural similarity (SSIM, Wang et al. 2004) for volumes and slices, in torch and differentiable.

Local means, variances and covariance come from a separable window (``"gaussian"``, σ=``sigma``, or
``"uniform"``) of ``size`` samples along each filtered axis, evaluated only where the window fits ("valid", no
padding). ``spatial_dims=3`` filters the three trailing axes of ``(B, C, D, H, W)``; ``spatial_dims=2`` filters the
last two (per-slice SSIM). Population (not sample) statistics; ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with
``L = data_range``. The result is the mean SSIM map per sample (over channels and positions): shape ``(B,)``.
:class:`SSIMReference` evaluates SSIM against one fixed reference repeatedly (an attack's objective): the
reference statistics are computed once and the gradient is analytic, with no autograd graph kept.

Per-block SSIM (:func:`block_ssim`, :class:`BlockSSIMReference`; the measure of the published VAFA code, there with
32³ blocks and a gaussian window of 3, σ 1.5): the filtered axes are cut into blocks of ``block`` from the origin,
SSIM is computed inside each block alone (valid windows, none crossing a block edge), its map is averaged per block
and channel, clamped at 0 (``nonnegative``, as published), and the per-sample result is the plain mean over
(channel, block) pairs. A block shorter than the window along some axis (the ragged last block of an axis whose
length is not a multiple of the block) has no valid window and is left out; the published code only accepts
shapes that are multiples of the block.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch

from volrob.errors import ConfigError

WINDOWS: tuple[str, ...] = ("gaussian", "uniform")


def window_1d(size: int, *, kind: str = "gaussian", sigma: float = 1.5, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalised 1-D window of odd ``size`` (sums to 1)."""
    if isinstance(size, bool) or int(size) != size or size < 1 or size % 2 == 0:
        raise ConfigError(f"ssim: window size must be a positive odd integer, got {size!r}")
    if kind not in WINDOWS:
        raise ConfigError(f"ssim: window must be one of {list(WINDOWS)}, got {kind!r}")
    if kind == "uniform":
        w = torch.ones(int(size), dtype=torch.float64)
    else:
        if not sigma > 0:
            raise ConfigError(f"ssim: sigma must be > 0, got {sigma}")
        r = torch.arange(int(size), dtype=torch.float64) - (size - 1) / 2
        w = torch.exp(-(r**2) / (2 * sigma**2))
    return (w / w.sum()).to(dtype=dtype, device=device)


def _filter(x: torch.Tensor, w: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """Valid separable correlation of ``x`` with ``w`` along each of ``dims`` (shifted views, summed in place)."""
    taps = w.tolist()
    for d in dims:
        n = x.shape[d] - len(taps) + 1
        out = x.narrow(d, 0, n) * taps[0]
        for k in range(1, len(taps)):
            out.add_(x.narrow(d, k, n), alpha=taps[k])
        x = out
    return x


def _filter_adjoint(g: torch.Tensor, w: torch.Tensor, dims: list[int], full: torch.Size) -> torch.Tensor:
    """Adjoint of :func:`_filter`: ``g`` on the valid grid back to shape ``full``."""
    taps = w.tolist()
    for d in reversed(dims):
        shape = list(g.shape)
        shape[d] = full[d]
        n = g.shape[d]
        out = g.new_empty(shape)
        torch.mul(g, taps[0], out=out.narrow(d, 0, n))  # the first tap writes, so only the tail needs zeros
        out.narrow(d, n, full[d] - n).zero_()
        for k in range(1, len(taps)):
            out.narrow(d, k, n).add_(g, alpha=taps[k])
        g = out
    return g


def _check(x: torch.Tensor, y: torch.Tensor, data_range: float, window: str, size: int, sigma: float,
           spatial_dims: int) -> tuple[torch.Tensor, list[int]]:
    """Validate the inputs and options; returns the 1-D window and the filtered axes."""
    if x.shape != y.shape:
        raise ConfigError(f"ssim: inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if spatial_dims not in (2, 3):
        raise ConfigError(f"ssim: spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if x.ndim < 2 + spatial_dims:
        raise ConfigError(f"ssim: input needs (B, C) plus {spatial_dims} spatial axes, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ConfigError("ssim: inputs must be floating-point tensors")
    if not data_range > 0:
        raise ConfigError(f"ssim: data_range must be > 0, got {data_range}")
    w = window_1d(size, kind=window, sigma=sigma, dtype=x.dtype, device=x.device)
    dims = list(range(x.ndim - spatial_dims, x.ndim))
    if min(x.shape[d] for d in dims) < size:
        raise ConfigError(f"ssim: window size {size} is larger than the input's spatial shape {tuple(x.shape)}")
    return w, dims


def ssim_map(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, window: str = "gaussian",
             size: int = 7, sigma: float = 1.5, spatial_dims: int = 3, k1: float = 0.01,
             k2: float = 0.03) -> torch.Tensor:
    """Local SSIM values ``(B, C, *valid_spatial)``."""
    w, dims = _check(x, y, data_range, window, size, sigma, spatial_dims)
    y = y.to(x.dtype)
    mu_x, mu_y = _filter(x, w, dims), _filter(y, w, dims)
    sxx = _filter(x * x, w, dims) - mu_x * mu_x
    syy = _filter(y * y, w, dims) - mu_y * mu_y
    sxy = _filter(x * y, w, dims) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, **kwargs: float | int | str) -> torch.Tensor:
    """Mean SSIM per sample, shape ``(B,)``; keyword options as :func:`ssim_map`. Differentiable."""
    return ssim_map(x, y, **kwargs).flatten(1).mean(dim=1)  # type: ignore[arg-type]


class _RefSSIM(torch.autograd.Function):
    """Mean SSIM of ``x`` against fixed reference statistics; the gradient is formed in the forward, no graph."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, ref: SSIMReference | BlockSSIMReference,  # type: ignore[override]
                ) -> torch.Tensor:
        value, grad = ref.value_and_grad(x, need_grad=x.requires_grad)
        ctx.save_for_backward(grad)
        return value

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_out.view(-1, *([1] * (grad.ndim - 1))), None


class SSIMReference:
    """``ssim(x, ref)`` for many ``x`` against one fixed ``ref``: the reference's local mean and variance are
    computed once, and the gradient is analytic (formed with the value, so no autograd graph is kept)."""

    def __init__(self, ref: torch.Tensor, *, data_range: float = 1.0, window: str = "gaussian", size: int = 7,
                 sigma: float = 1.5, spatial_dims: int = 3, k1: float = 0.01, k2: float = 0.03) -> None:
        self.w, self.dims = _check(ref, ref, data_range, window, size, sigma, spatial_dims)
        self.ref = ref.detach()
        self.c1, self.c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
        self.mu = _filter(self.ref, self.w, self.dims)
        self.var = _filter(self.ref * self.ref, self.w, self.dims) - self.mu * self.mu

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Mean SSIM per sample ``(B,)``, equal to ``ssim(x, ref, ...)``; differentiable in ``x``."""
        if x.shape != self.ref.shape or x.dtype != self.ref.dtype:
            raise ConfigError(f"ssim: input {tuple(x.shape)} {x.dtype} does not match the reference "
                              f"{tuple(self.ref.shape)} {self.ref.dtype}")
        return _RefSSIM.apply(x, self)

    def value_and_grad(self, x: torch.Tensor, *, need_grad: bool = True,
                       slabs: int = 8) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean SSIM per sample and, if ``need_grad``, the gradient of their sum with respect to ``x``.

        Evaluated one channel at a time, in ``slabs`` slabs along the first filtered axis (each with its window's
        overlap): the temporaries are a fraction of one channel, small enough to stay in cache, and channels need
        no overlap since the window is spatial only.
        """
        if isinstance(slabs, bool) or not isinstance(slabs, int) or slabs < 1:
            raise ConfigError(f"ssim: slabs must be a positive integer, got {slabs!r}")
        x = x.detach()
        d0, size = self.dims[0], self.w.numel()
        n_out = self.mu.shape[d0]
        step = -(-n_out // min(slabs, n_out))
        count = self.mu[0].numel()
        total = x.new_zeros(x.shape[0])
        grad = torch.zeros_like(x) if need_grad else None
        for c in range(x.shape[1]):
            xc, rc, mc, vc = (t.narrow(1, c, 1) for t in (x, self.ref, self.mu, self.var))
            gc = None if grad is None else grad.narrow(1, c, 1)
            for o0 in range(0, n_out, step):
                n = min(step, n_out - o0)
                total += self._slab(xc.narrow(d0, o0, n + size - 1), rc.narrow(d0, o0, n + size - 1),
                                    mc.narrow(d0, o0, n), vc.narrow(d0, o0, n),
                                    None if gc is None else gc.narrow(d0, o0, n + size - 1), 1.0 / count)
        return total / count, grad

    def _slab(self, x: torch.Tensor, r: torch.Tensor, mr: torch.Tensor, var: torch.Tensor,
              grad: torch.Tensor | None, scale: float) -> torch.Tensor:
        """Sum of one slab's SSIM map per sample; adds ``scale`` times its gradient into ``grad`` (a view)."""
        w, dims = self.w, self.dims
        mx = _filter(x, w, dims)
        sxx = _filter(x * x, w, dims).sub_(mx * mx)
        sxr = _filter(x * r, w, dims).sub_(mx * mr)
        a1 = (2 * mx * mr).add_(self.c1)
        a2 = (2 * sxr).add_(self.c2)
        del sxr
        b1 = (mx * mx).add_(mr * mr).add_(self.c1)
        b2 = sxx.add_(var).add_(self.c2)
        den = b1 * b2
        s = (a1 * a2).div_(den)
        total = s.flatten(1).sum(dim=1)
        if grad is None:
            return total
        d_mx = (mr * a2).div_(den).sub_(s.div(b1).mul_(mx)).mul_(2 * scale)  # dS/d(mu_x), sigmas held fixed
        del a2, b1
        d_sxr = a1.div_(den).mul_(2 * scale)  # dS/d(sigma_xr)
        d_sxx = s.div_(b2).mul_(-scale)  # dS/d(sigma_xx)
        del den, b2
        d_mx.sub_(d_sxx * mx * 2).sub_(mr * d_sxr)  # sigma_xx and sigma_xr depend on mu_x too
        del mx
        full = x.shape
        grad.add_(_filter_adjoint(d_mx, w, dims, full))
        del d_mx
        grad.add_(_filter_adjoint(d_sxx, w, dims, full).mul_(x).mul_(2))
        del d_sxx
        grad.add_(_filter_adjoint(d_sxr, w, dims, full).mul_(r))
        return total


def _block_sizes(block: int | Sequence[int], spatial_dims: int, size: int) -> list[int]:
    """``block`` as one size per filtered axis, each a positive integer at least the window ``size``."""
    sizes = [block] * spatial_dims if isinstance(block, int) else list(block) if isinstance(block, Sequence) else []
    if len(sizes) != spatial_dims or any(isinstance(b, bool) or not isinstance(b, int) or b < size for b in sizes):
        raise ConfigError(f"ssim: block must be {spatial_dims} integer size(s) >= the window size {size}, "
                          f"got {block!r}")
    return sizes


def _segments(n: int, b: int, size: int) -> list[tuple[int, int, int]]:
    """``(start, stop, block length)`` of the runs of equal blocks along an axis of length ``n`` cut every ``b``
    from 0, leaving out a last block shorter than ``size``."""
    full, tail = divmod(n, b)
    out = [(0, full * b, b)] if full else []
    if tail >= size:
        out.append((full * b, n, tail))
    return out


def _block_groups(shape: Sequence[int], block: Sequence[int], size: int
                  ) -> list[tuple[tuple[slice, ...], tuple[int, ...]]]:
    """The parts of a grid of ``shape`` holding equal-shaped blocks: (index over the filtered axes, block shape)."""
    per_axis = [_segments(n, b, size) for n, b in zip(shape, block, strict=True)]
    return [(tuple(slice(a, z) for a, z, _ in combo), tuple(b for _, _, b in combo))
            for combo in itertools.product(*per_axis)]


def _to_blocks(t: torch.Tensor, index: tuple[slice, ...], bshape: tuple[int, ...]) -> torch.Tensor:
    """Part ``index`` (over the trailing axes) of ``t`` as ``(B, blocks, *bshape)``; every axis between the batch
    and the filtered ones (channels, unfiltered slices) becomes part of the block axis."""
    k = len(bshape)
    sub = t[(..., *index)]
    lead, counts = sub.shape[:-k], [n // b for n, b in zip(sub.shape[-k:], bshape, strict=True)]
    split = sub.reshape(*lead, *(v for n, b in zip(counts, bshape, strict=True) for v in (n, b)))
    nl = len(lead)
    order = [*range(nl), *(nl + 2 * i for i in range(k)), *(nl + 2 * i + 1 for i in range(k))]
    return split.permute(order).reshape(lead[0], -1, *bshape)


def _from_blocks(g: torch.Tensor, shape: Sequence[int], bshape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`_to_blocks`: ``(B, blocks, *bshape)`` back to the part's ``shape``."""
    k = len(bshape)
    lead, counts = list(shape[:-k]), [n // b for n, b in zip(shape[-k:], bshape, strict=True)]
    nl = len(lead)
    g = g.reshape(*lead, *counts, *bshape)
    order = [*range(nl), *(v for i in range(k) for v in (nl + i, nl + k + i))]
    return g.permute(order).reshape(*shape)


def _block_means(x: torch.Tensor, y: torch.Tensor, bshape: tuple[int, ...], options: dict[str, Any],
                 nonnegative: bool) -> torch.Tensor:
    """Mean SSIM of each block of ``(B, blocks, *bshape)`` inputs, ``(B, blocks)``, clamped at 0 if asked."""
    s = ssim_map(x, y, spatial_dims=len(bshape), **options).flatten(2).mean(dim=2)
    return torch.relu(s) if nonnegative else s


def block_ssim(x: torch.Tensor, y: torch.Tensor, *, block: int | Sequence[int], data_range: float = 1.0,
               window: str = "gaussian", size: int = 3, sigma: float = 1.5, spatial_dims: int = 3, k1: float = 0.01,
               k2: float = 0.03, nonnegative: bool = True) -> torch.Tensor:
    """Per-block SSIM per sample, shape ``(B,)`` (see the module docstring); differentiable."""
    _check(x, y, data_range, window, size, sigma, spatial_dims)
    sizes = _block_sizes(block, spatial_dims, size)
    y = y.to(x.dtype)
    options = {"data_range": data_range, "window": window, "size": size, "sigma": sigma, "k1": k1, "k2": k2}
    parts = [_block_means(_to_blocks(x, index, bshape), _to_blocks(y, index, bshape), bshape, options, nonnegative)
             for index, bshape in _block_groups(x.shape[-spatial_dims:], sizes, size)]
    return torch.cat(parts, dim=1).mean(dim=1)


class BlockSSIMReference:
    """``block_ssim(x, ref)`` for many ``x`` against one fixed ``ref``, differentiable in ``x``. Blocks are
    independent, so the value and gradient are formed a few blocks at a time (about ``chunk`` voxels) with a
    short-lived graph: memory of one chunk, not of the volume, and no graph is kept between calls."""

    def __init__(self, ref: torch.Tensor, *, block: int | Sequence[int], data_range: float = 1.0,
                 window: str = "gaussian", size: int = 3, sigma: float = 1.5, spatial_dims: int = 3,
                 k1: float = 0.01, k2: float = 0.03, nonnegative: bool = True, chunk: int = 1 << 21) -> None:
        _check(ref, ref, data_range, window, size, sigma, spatial_dims)
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ConfigError(f"ssim: chunk must be a positive integer, got {chunk!r}")
        self.block = _block_sizes(block, spatial_dims, size)
        self.ref = ref.detach()
        self.options = {"data_range": data_range, "window": window, "size": size, "sigma": sigma, "k1": k1, "k2": k2}
        self.nonnegative, self.chunk = bool(nonnegative), chunk
        self.groups = _block_groups(ref.shape[-spatial_dims:], self.block, size)
        lead = math.prod(ref.shape[1:-spatial_dims])
        self.count = sum(lead * math.prod((i.stop - i.start) // b for i, b in zip(index, bshape, strict=True))
                         for index, bshape in self.groups)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Per-block SSIM per sample ``(B,)``, equal to ``block_ssim(x, ref, ...)``; differentiable in ``x``."""
        if x.shape != self.ref.shape or x.dtype != self.ref.dtype:
            raise ConfigError(f"ssim: input {tuple(x.shape)} {x.dtype} does not match the reference "
                              f"{tuple(self.ref.shape)} {self.ref.dtype}")
        return _RefSSIM.apply(x, self)

    def value_and_grad(self, x: torch.Tensor, *, need_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-block SSIM per sample and, if ``need_grad``, the gradient of their sum with respect to ``x``."""
        x = x.detach()
        total = x.new_zeros(x.shape[0])
        grad = torch.zeros_like(x) if need_grad else None
        for index, bshape in self.groups:
            xb, rb = _to_blocks(x, index, bshape), _to_blocks(self.ref, index, bshape)
            gb = torch.empty_like(xb) if need_grad else None
            step = max(1, self.chunk // (x.shape[0] * math.prod(bshape)))
            for u in range(0, xb.shape[1], step):
                with torch.enable_grad():  # also inside an autograd Function's forward (grad mode off there)
                    part = xb[:, u:u + step].detach().requires_grad_(need_grad)
                    s = _block_means(part, rb[:, u:u + step], bshape, self.options, self.nonnegative)
                    if gb is not None:
                        (gb[:, u:u + step],) = torch.autograd.grad(s.sum(), part)
                total += s.detach().sum(dim=1)
            if grad is not None and gb is not None:
                target = grad[(..., *index)]
                target.copy_(_from_blocks(gb, target.shape, bshape))
        return total / self.count, None if grad is None else grad.div_(self.count)
