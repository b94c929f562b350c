"""Structural similarity (SSIM, Wang et al. 2004) for volumes and slices, in torch and differentiable.

Local means, variances and covariance come from a separable window (``"gaussian"``, σ=``sigma``, or
``"uniform"``) of ``size`` samples along each filtered axis, evaluated only where the window fits ("valid", no
padding). ``spatial_dims=3`` filters the three trailing axes of ``(B, C, D, H, W)``; ``spatial_dims=2`` filters the
last two (per-slice SSIM). Population (not sample) statistics; ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with
``L = data_range``. The result is the mean SSIM map per sample (over channels and positions): shape ``(B,)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
    """Valid separable correlation of ``x`` with ``w`` along each of ``dims``."""
    kernel = w.view(1, 1, -1)
    for d in dims:
        moved = x.movedim(d, -1)
        lead = moved.shape[:-1]
        out = F.conv1d(moved.reshape(-1, 1, moved.shape[-1]), kernel)
        x = out.reshape(*lead, out.shape[-1]).movedim(-1, d)
    return x


def ssim_map(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, window: str = "gaussian",
             size: int = 7, sigma: float = 1.5, spatial_dims: int = 3, k1: float = 0.01,
             k2: float = 0.03) -> torch.Tensor:
    """Local SSIM values ``(B, C, *valid_spatial)``."""
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

