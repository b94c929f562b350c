"""Selective scan (the S6 recurrence of Mamba) in pure PyTorch: a sequential reference and a chunked fast path.

Shapes follow ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``::

    u, delta: (batch, dim, L)    A: (dim, N) real    B, C: (batch, N, L)    D, delta_bias: (dim,)    z: (batch, dim, L)

    delta <- softplus(delta + delta_bias)        (bias and softplus optional)
    h_t    = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t          (h: (batch, dim, N), h_{-1} = 0)
    y_t    = <C_t, h_t> + D * u_t,   and y <- y * silu(z) when z is given.

:func:`selective_scan` splits time into chunks of ``chunk_size`` steps. Inside a chunk, with ``S_t`` the running sum
of ``delta * A`` from the chunk start and ``x_s = delta_s * B_s * u_s``, the state is
``h_t = sum_{s<=t} exp(S_t - S_s) x_s + exp(S_t) h_start``: one (T x T) decay matrix per (batch, dim, state) and a
batched matrix-vector product. ``S_t - S_s`` is summed from the terms between s and t (a masked cumulative sum, so
a large early step cannot cancel the precision of later small ones), the entries with ``s > t`` are set to
``-inf`` *before* ``exp`` so large ``delta * |A|`` never overflows, and log-decays below the smallest normal float
are clamped (denormals are slow on CPUs; such decays change nothing visible). The state is carried between chunks
by a short Python loop, and each chunk is recomputed in the backward pass (activation checkpointing): autograd
holds the inputs plus one state per chunk, and the working memory is one chunk's decay matrices.

The chunked form does about ``chunk_size`` times the arithmetic of the sequential loop. On a small CPU the loop is
faster, the chunked scan uses less memory with gradients (``docs/bench_selective_scan.md``).

On CUDA, when the ``mamba_ssm`` package can be imported, :func:`selective_scan` hands float16/bfloat16/float32
inputs to its fused ``selective_scan_fn`` instead (see :func:`cuda_kernel_for`); everywhere else it uses the
chunked PyTorch path.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from volrob.errors import ConfigError, DataError

DEFAULT_CHUNK_SIZE = 8
KERNEL_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
_KERNEL_ALLOWED: ContextVar[bool] = ContextVar("volrob_mamba_kernel", default=True)


def _check_inputs(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    delta_bias: Tensor | None,
) -> None:
    """Raise :class:`DataError` naming the first argument whose shape does not fit the others."""
    if u.dim() != 3:
        raise DataError(f"selective scan: u must be (batch, dim, L), got shape {list(u.shape)}")
    if A.dim() != 2:
        raise DataError(f"selective scan: A must be (dim, N), got shape {list(A.shape)}")
    batch, dim, length = u.shape
    state = A.shape[1]
    expected = {
        "delta": (delta, (batch, dim, length)),
        "A": (A, (dim, state)),
        "B": (B, (batch, state, length)),
        "C": (C, (batch, state, length)),
        "D": (D, (dim,)),
        "z": (z, (batch, dim, length)),
        "delta_bias": (delta_bias, (dim,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise DataError(
                f"selective scan: {name} must have shape {list(shape)} for u of shape {list(u.shape)} "
                f"and A of shape {list(A.shape)}, got {list(tensor.shape)}"
            )
    if length < 1:
        raise DataError("selective scan: sequence length L must be at least 1")


def _prepare_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    return F.softplus(delta) if delta_softplus else delta


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    if D is not None:
        y = y + D[None, :, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Sequential reference: one Python step per time index. Returns y of shape (batch, dim, L)."""
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        decay = torch.exp(delta[:, :, t, None] * A[None])  # (batch, dim, N)
        drive = (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        h = decay * h + drive
        ys.append((h * C[:, None, :, t]).sum(-1))
    return _finish(torch.stack(ys, dim=-1), u, D, z)


def _log_floor(dtype: torch.dtype) -> float:
    """Log-decays are clamped here: exp() stays a normal number (denormals are very slow on CPUs).

    The smallest normal float is ~1e-38 (float32) or ~1e-308 (float64); a decay that small changes nothing
    visible in the result.
    """
    return math.log(torch.finfo(dtype).tiny) + 1.0


def _segment_sums(log_decay: Tensor, after: Tensor, keep: Tensor) -> Tensor:
    """``out[..., s, t] = sum_{s < k <= t} log_decay[..., k]`` for ``s <= t`` and ``-inf`` for ``s > t``.

    ``after[s, k] = k > s`` and ``keep[s, t] = s <= t`` are boolean (T, T) masks. This is the difference of
    running sums ``S_t - S_s``, but summed from the terms themselves (a masked cumulative sum along each row), so
    one large early step cannot swallow the precision of the small steps after it. The lower triangle
    (``s > t``) is set to ``-inf`` before any ``exp``. Indexed [source, target] so the sum runs along the last,
    contiguous axis.
    """
    terms = torch.where(after, log_decay[..., None, :], 0.0)  # terms[..., s, k] = log_decay[..., k] for k > s
    sums = terms.cumsum(-1).clamp(min=_log_floor(log_decay.dtype))
    return torch.where(keep, sums, -math.inf)


def _scan_chunk(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor | None, after: Tensor, keep: Tensor
) -> tuple[Tensor, Tensor]:
    """One chunk of T steps from state ``h0`` (None = zeros): returns (y without D/z, final state)."""
    log_decay = delta[:, :, None, :] * A[None, :, :, None]  # (batch, dim, N, T)
    decay = _segment_sums(log_decay, after, keep).exp()  # decay[..., s, t]: from step s to step t, zero for s > t
    drive = (delta * u)[:, :, None, :] * B[:, None, :, :]  # (batch, dim, N, T)
    h = (drive[..., None, :] @ decay).squeeze(-2)  # h[..., t] = sum_s drive[..., s] * decay[..., s, t]
    if h0 is not None:
        h = h + log_decay.cumsum(-1).clamp(min=_log_floor(log_decay.dtype)).exp() * h0[..., None]
    y = (h * C[:, None, :, :]).sum(2)
    return y, h[..., -1].clone()  # a copy, so the chunk's (batch, dim, N, T) states can be freed


def _chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
    """y (without D/z) by chunks; each chunk is recomputed in backward when a graph is being built."""
    needs_graph = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    ys: list[Tensor] = []
    h: Tensor | None = None
    masks: dict[int, tuple[Tensor, Tensor]] = {}
    for start in range(0, u.shape[-1], chunk_size):
        part = slice(start, start + chunk_size)
        steps = u[..., part].shape[-1]
        if steps not in masks:
            upper = torch.ones(steps, steps, dtype=torch.bool, device=u.device).triu()
            masks[steps] = (upper.triu(1), upper)
        args = (u[..., part], delta[..., part], A, B[..., part], C[..., part], h, *masks[steps])
        if needs_graph:
            y, h = checkpoint(_scan_chunk, *args, use_reentrant=False)
        else:
            y, h = _scan_chunk(*args)
        ys.append(y)
    return ys[0] if len(ys) == 1 else torch.cat(ys, dim=-1)


@functools.cache
def _load_mamba_ssm_kernel() -> Callable[..., Tensor] | None:
    """``mamba_ssm``'s fused ``selective_scan_fn``, or None when the package cannot be imported."""
    try:
        module = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    except Exception:  # absent, or present but built against another torch/CUDA: fall back to PyTorch
        return None
    return getattr(module, "selective_scan_fn", None)


@contextlib.contextmanager
def pytorch_scan() -> Iterator[None]:
    """Within this block :func:`selective_scan` uses the PyTorch path even where the fused kernel is available
    (to compare the two on a GPU)."""
    token = _KERNEL_ALLOWED.set(False)
    try:
        yield
    finally:
        _KERNEL_ALLOWED.reset(token)


def cuda_kernel_for(device: torch.device, dtype: torch.dtype) -> Callable[..., Tensor] | None:
    """The fused kernel to use for tensors on ``device`` with ``dtype``, or None for the PyTorch path.

    The kernel is used only on CUDA, for float16/bfloat16/float32, only when ``mamba_ssm`` imports, and not inside
    :func:`pytorch_scan`.
    """
    if device.type != "cuda" or dtype not in KERNEL_DTYPES or not _KERNEL_ALLOWED.get():
        return None
    return _load_mamba_ssm_kernel()


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """Same result as :func:`selective_scan_ref`, computed by chunks (or by ``mamba_ssm`` on CUDA).

    ``chunk_size`` bounds the working memory: one (batch, dim, N, chunk_size, chunk_size) decay tensor.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"selective scan: chunk_size must be a positive integer, got {chunk_size!r}")
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    kernel = cuda_kernel_for(u.device, u.dtype)
    if kernel is not None:
        return kernel(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    return _finish(_chunked(u, delta, A, B, C, chunk_size), u, D, z)
