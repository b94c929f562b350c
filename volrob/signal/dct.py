"""Orthonormal DCT-II (and its inverse) along chosen axes, whole-axis or in blocks, by matrix products.

Along one axis of length ``N`` the transform is ``X = C x`` with ``C[k, n] = sqrt(2/N) cos(pi (2n+1) k / 2N)``,
row 0 scaled by ``1/sqrt(2)``; ``C`` is orthogonal, so the inverse is ``C^T``. A separable N-D DCT applies it
along each axis in turn.

Block transforms keep the input's layout: the coefficients of a block sit where the block's voxels were.
Sides not divisible by the block use a *ragged last block*: the remaining ``N mod b`` samples get their own,
smaller orthonormal DCT. The block transform is therefore an exact orthonormal map of the whole tensor (no
padding, no cropping), ``block_idct(block_dct(x)) == x`` and Parseval holds.

Backends: ``"matrix"`` (default; cached matrices, batched ``matmul`` on views of the input, no axis moves) and
``"torch_dct"`` (the FFT-based ``torch-dct`` package with ``norm="ortho"``; kept as an oracle and for comparison).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from volrob.errors import ConfigError

BACKENDS: tuple[str, ...] = ("matrix", "torch_dct")


@functools.lru_cache(maxsize=64)
def _dct_matrix_cached(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    c = math.sqrt(2.0 / n) * torch.cos(math.pi * (2 * i + 1) * k / (2 * n))
    c[0] /= math.sqrt(2.0)
    return c.to(dtype=dtype, device=device)


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``(n, n)`` orthonormal DCT-II matrix (cached per ``(n, dtype, device)``; do not modify in place)."""
    if int(n) != n or n < 1:
        raise ConfigError(f"dct: matrix size must be a positive integer, got {n!r}")
    return _dct_matrix_cached(int(n), dtype, torch.device(device))


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"dct: backend must be one of {list(BACKENDS)}, got {backend!r}")


def _last_axis(x: torch.Tensor, n: int, *, inverse: bool, backend: str) -> torch.Tensor:
    """(I)DCT of consecutive length-``n`` chunks of the last axis (all chunks have length ``n``)."""
    shape = x.shape
    chunks = x.reshape(*shape[:-1], shape[-1] // n, n)
    if backend == "matrix":
        c = dct_matrix(n, dtype=x.dtype, device=x.device)
        out = chunks @ (c if inverse else c.T)
    else:
        import torch_dct

        out = torch_dct.idct(chunks, norm="ortho") if inverse else torch_dct.dct(chunks, norm="ortho")
    return out.reshape(shape)


def _matrix_block_axis(x: torch.Tensor, dim: int, n: int, b: int, *, inverse: bool) -> torch.Tensor:
    """Matrix-backend block (I)DCT along ``dim`` by batched products on a view: no axis moves, no copies."""
    shape = x.shape
    lead, trail = math.prod(shape[:dim]), math.prod(shape[dim + 1:])
    c = dct_matrix(b, dtype=x.dtype, device=x.device)
    if n % b == 0:
        if trail == 1:
            return (x.reshape(lead, n // b, b) @ (c if inverse else c.T)).reshape(shape)
        return torch.matmul(c.T if inverse else c, x.reshape(lead, n // b, b, trail)).reshape(shape)
    full = (n // b) * b  # ragged last block: one block-diagonal matrix over the whole axis
    m = torch.block_diag(*[c] * (n // b), dct_matrix(n - full, dtype=x.dtype, device=x.device))
    if trail == 1:
        return (x.reshape(lead, n) @ (m if inverse else m.T)).reshape(shape)
    return torch.matmul(m.T if inverse else m, x.reshape(lead, n, trail)).reshape(shape)


def _block_axis(x: torch.Tensor, dim: int, block: int, *, inverse: bool, backend: str) -> torch.Tensor:
    """Block (I)DCT along ``dim``, with a ragged last block when the side is not divisible by ``block``."""
    n = x.shape[dim]
    b = min(block, n)
    if backend == "matrix":
        return _matrix_block_axis(x, dim, n, b, inverse=inverse)
    moved = x.movedim(dim, -1)
    full = (n // b) * b
    parts = [_last_axis(moved[..., :full], b, inverse=inverse, backend=backend)]
    if full < n:
        parts.append(_last_axis(moved[..., full:], n - full, inverse=inverse, backend=backend))
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    return out.movedim(-1, dim)


def _normalise_dims(x: torch.Tensor, dims: Sequence[int]) -> list[int]:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ConfigError("dct: input must be a floating-point tensor")
    dims = list(dims)
    if not dims:
        raise ConfigError("dct: dims must name at least one axis")
    out = []
    for d in dims:
        if not -x.ndim <= d < x.ndim:
            raise ConfigError(f"dct: axis {d} is out of range for a {x.ndim}-D input")
        out.append(d % x.ndim)
    if len(set(out)) != len(out):
        raise ConfigError(f"dct: dims must be distinct, got {dims}")
    return out


def _blocks_per_dim(block: int | Sequence[int], ndims: int) -> list[int]:
    sizes = [block] * ndims if isinstance(block, int) else list(block)
    if len(sizes) != ndims:
        raise ConfigError(f"dct: block needs one size per transformed axis ({ndims}), got {list(sizes)}")
    for s in sizes:
        if isinstance(s, bool) or int(s) != s or s < 1:
            raise ConfigError(f"dct: block sizes must be positive integers, got {sizes}")
    return [int(s) for s in sizes]


def _apply(x: torch.Tensor, dims: Sequence[int], block: int | Sequence[int] | None, *, inverse: bool,
           backend: str) -> torch.Tensor:
    _check_backend(backend)
    axes = _normalise_dims(x, dims)
    sizes = [x.shape[d] for d in axes] if block is None else _blocks_per_dim(block, len(axes))
    for d, b in zip(axes, sizes, strict=True):
        x = _block_axis(x, d, b, inverse=inverse, backend=backend)
    return x


def dct_nd(x: torch.Tensor, dims: Sequence[int], *, backend: str = "matrix") -> torch.Tensor:
    """Orthonormal DCT-II over the whole of each axis in ``dims`` (``scipy.fft.dctn(type=2, norm="ortho")``)."""
    return _apply(x, dims, None, inverse=False, backend=backend)


def idct_nd(x: torch.Tensor, dims: Sequence[int], *, backend: str = "matrix") -> torch.Tensor:
    """Inverse of :func:`dct_nd`."""
    return _apply(x, dims, None, inverse=True, backend=backend)


def _block_dims(x: torch.Tensor, dims: Sequence[int] | None) -> Sequence[int]:
    if dims is not None:
        return dims
    if x.ndim != 5:
        raise ConfigError(f"dct: block transforms expect (B, C, D, H, W), got {x.ndim}-D input")
    return (2, 3, 4)


def block_dct(x: torch.Tensor, block: int | Sequence[int], dims: Sequence[int] | None = None, *,
              backend: str = "matrix") -> torch.Tensor:
    """Blockwise orthonormal DCT-II, coefficients in place of each block's voxels.

    ``dims=None`` means the three spatial axes of a ``(B, C, D, H, W)`` tensor (3D blocks); ``dims=(3, 4)`` gives
    2D blocks on every slice. ``block`` is one size for all axes or one per axis; see the module for ragged sides.
    """
    return _apply(x, _block_dims(x, dims), block, inverse=False, backend=backend)


def block_idct(x: torch.Tensor, block: int | Sequence[int], dims: Sequence[int] | None = None, *,
               backend: str = "matrix") -> torch.Tensor:
    """Inverse of :func:`block_dct` (same ``block`` and ``dims``)."""
    return _apply(x, _block_dims(x, dims), block, inverse=True, backend=backend)
