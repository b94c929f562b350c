"""Structural similarity (SSIM, Wang et al. 2004) for volumes and slices, in torch and differentiable.

Local means, variances and covariance come from a separable window (``"gaussian"``, σ=``sigma``, or
``"uniform"``) of ``size`` samples along each filtered axis, evaluated only where the window fits ("valid", no
padding). ``spatial_dims=3`` filters the three trailing axes of ``(B, C, D, H, W)``; ``spatial_dims=2`` filters the
last two (per-slice SSIM). Population (not sample) statistics; ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with
``L = data_range``. The result is the mean SSIM map per sample (over channels and positions): shape ``(B,)``.
:class:`SSIMReference` evaluates SSIM against one fixed reference repeatedly (an attack's objective): the
reference statistics are computed once and the gradient is analytic, with no autograd graph kept.
"""

from __future__ import annotations

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
    def forward(ctx: Any, x: torch.Tensor, ref: SSIMReference) -> torch.Tensor:  # type: ignore[override]
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
