"""Mamba (S6) layers over token sequences, with optional multi-direction scanning of a 3D token grid.

``MambaLayer`` follows the Mamba block: ``in_proj`` to (x, z); causal depthwise Conv1d + SiLU on x; ``x_proj`` to
(dt, B, C); ``dt_proj`` with the standard dt initialisation; a selective scan with ``A = -exp(A_log)``
(S4D-real init ``A_log = log(1..N)``) and skip ``D`` (ones); gating by ``silu(z)``; ``out_proj``.

Directions (as in Vim / SegMamba / nnMamba):

- ``"forward"``: one scan in token order (causal: output t depends on inputs <= t only);
- ``"bidirectional"``: the forward scan plus one over the reversed sequence;
- ``"tri"``: three scans along three flattenings of the (D, H, W) token grid — D-major (the input order, D
  slowest), H-major (order H, W, D) and W-major (order W, D, H) — so every axis is once the slowest and once
  the fastest; needs ``grid`` at call time.

Each direction has its own scan parameters (conv, ``x_proj``, ``dt_proj``, ``A_log``, ``D``) while ``in_proj`` and
``out_proj`` are shared (Vim's choice). The per-direction outputs, put back in token order, are averaged
before the ``silu(z)`` gate. Parameters are initialised from torch's default generator, like every ``nn`` layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from volrob.errors import ConfigError, DataError
from volrob.models.mamba.scan import DEFAULT_CHUNK_SIZE, selective_scan

DIRECTIONS: tuple[str, ...] = ("forward", "bidirectional", "tri")


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"MambaLayer: {name} must be a positive integer, got {value!r}")
    return value


def grid_orders(directions: str, length: int, grid: Sequence[int] | None, device: torch.device) -> list[Tensor | None]:
    """Token visiting order of each scan (None = the input order), for a sequence of ``length`` tokens."""
    if directions == "forward":
        return [None]
    if directions == "bidirectional":
        return [None, torch.arange(length - 1, -1, -1, device=device)]
    if grid is None or len(grid) != 3 or math.prod(int(g) for g in grid) != length:
        raise DataError(f"MambaLayer: directions 'tri' needs grid=(D, H, W) with D*H*W = {length}, got {grid!r}")
    index = torch.arange(length, device=device).reshape(*(int(g) for g in grid))
    return [None, index.permute(1, 2, 0).reshape(-1), index.permute(2, 0, 1).reshape(-1)]


class SelectiveSSM(nn.Module):
    """The direction-specific part of a Mamba block: causal conv, input-dependent (dt, B, C), selective scan."""

    def __init__(
        self, d_inner: int, d_state: int, d_conv: int, dt_rank: int, *, dt_min: float, dt_max: float,
        dt_init_floor: float, chunk_size: int,
    ) -> None:
        super().__init__()
        self.d_state, self.dt_rank, self.chunk_size = d_state, dt_rank, chunk_size
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self._init_dt(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        """dt log-uniform in [dt_min, dt_max] (floored), stored as the bias through the inverse of softplus."""
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_dt = torch.rand(self.dt_proj.out_features) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = log_dt.exp().clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, x: Tensor) -> Tensor:
        """(batch, d_inner, L) -> (batch, d_inner, L), before the ``silu(z)`` gate."""
        length = x.shape[-1]
        x = F.silu(self.conv1d(x)[..., :length])
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)
        return selective_scan(
            x, delta, -torch.exp(self.A_log), B.transpose(1, 2), C.transpose(1, 2), D=self.D,
            delta_bias=self.dt_proj.bias, delta_softplus=True, chunk_size=self.chunk_size,
        )


class MambaLayer(nn.Module):
    """A Mamba block on (batch, L, d_model) token sequences; see the module docstring for ``directions``."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        *,
        directions: str = "forward",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand),
                            ("chunk_size", chunk_size)):
            _positive_int(name, value)
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        _positive_int("dt_rank", dt_rank)
        if directions not in DIRECTIONS:
            raise ConfigError(f"MambaLayer: directions must be one of {list(DIRECTIONS)}, got {directions!r}")
        if not 0 < dt_min <= dt_max:
            raise ConfigError(f"MambaLayer: need 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")
        self.d_model, self.d_inner, self.directions = d_model, expand * d_model, directions
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        n_scans = {"forward": 1, "bidirectional": 2, "tri": 3}[directions]
        self.ssms = nn.ModuleList(
            SelectiveSSM(self.d_inner, d_state, d_conv, int(dt_rank), dt_min=dt_min, dt_max=dt_max,
                         dt_init_floor=dt_init_floor, chunk_size=chunk_size)
            for _ in range(n_scans)
        )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, x: Tensor, grid: Sequence[int] | None = None) -> Tensor:
        """(batch, L, d_model) -> (batch, L, d_model); ``grid`` = (D, H, W) of the tokens, needed for ``"tri"``."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise DataError(f"MambaLayer: input must be (batch, L, {self.d_model}), got shape {list(x.shape)}")
        xs, z = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)  # each (batch, d_inner, L)
        outs = [
            ssm(xs) if order is None else ssm(xs[..., order])[..., torch.argsort(order)]  # back to token order
            for ssm, order in zip(self.ssms, grid_orders(self.directions, x.shape[1], grid, x.device), strict=True)
        ]
        y = sum(outs[1:], outs[0]) / len(outs) * F.silu(z)
        return self.out_proj(y.transpose(1, 2))


class ResidualMamba(nn.Module):
    """Pre-norm residual wrapper: ``x + MambaLayer(LayerNorm(x))``; keyword arguments go to :class:`MambaLayer`."""

    def __init__(self, d_model: int, **layer_kwargs: object) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mamba = MambaLayer(d_model, **layer_kwargs)  # type: ignore[arg-type]

    def forward(self, x: Tensor, grid: Sequence[int] | None = None) -> Tensor:
        """(batch, L, d_model) -> same shape."""
        return x + self.mamba(self.norm(x), grid)
