"""VAFA: volumetric adversarial frequency attack (Hanif et al., MICCAI 2023), 3D blocks and 2D (per-slice) blocks.

Each channel of ``x`` (scaled to 0..255) is split into blocks, each block is DCT-transformed, and the coefficients
are quantised with learnable tables ``q`` (one value per coefficient per block per channel per sample, i.e. the
same shape as ``x``): ``x_adv = IDCT(round(DCT(255 x) / q) * q) / 255``. Rounding is relaxed by
:func:`soft_round` with a temperature annealed linearly from ``alpha_start`` to ~0 over the steps. Each step
ascends ``L_seg(predictor(x_adv), target) - ssim_weight * (1 - SSIM(x_adv, x))`` by ``q += step_size *
sign(grad)`` and clips ``q`` to ``[q_min, q_max]``. The returned ``x_adv`` uses hard rounding with the final ``q``,
is clipped to the valid range and equals ``x`` outside the threat model's region (brain mask).

Defaults, and where each comes from. The paper's main setting: 20 steps, ``q_max=20``, 32³ blocks for 3D, SSIM
term on with weight 1, unit signed steps, ``alpha_start=0.1`` annealed linearly towards 1e-20. The table start and
floor follow the published code (asif-hanif/vafa), not the paper's algorithm: tables start at ``q_max`` and are
clipped to ``[q_min, q_max]`` with ``q_min=5`` (``q_init`` is recorded); the paper's algorithm starts them at 1 and
clips to ``[1, q_max]`` (give ``q_min=1`` for that floor; the start at 1 is not offered). volrob's own choices: 2D
blocks 8×8 (as in AdvDrop, which the 2D variant adapts) and, by default, a volume SSIM with a 3D gaussian window of
7 (σ 1.5) in the objective.

The published protocol as explicit, recorded options (defaults leave the attack as described above):

- ``ssim="per_block"``: the published SSIM term: SSIM inside each block of ``ssim_block`` (default: the DCT block,
  32³ for 3D) with a gaussian window of ``ssim_window`` (default 3 for ``per_block``, 7 for ``volume``; σ 1.5),
  per-block means clamped at 0 and averaged (:func:`~volrob.signal.ssim.block_ssim`). For ``vafa2d`` the blocks
  are its 2D blocks on each slice (the published 2D attack has no SSIM term).
- ``output_rescale="per_slice_minmax"``: the published code's last step, not in the paper: every slice along
  ``rescale_axis`` (a tensor dimension of ``(B, C, D, H, W)``; default ``-1``, recorded as 4, the last spatial axis,
  which is where the published code puts its slices) of every channel is mapped onto the valid range
  (``[clip_min, clip_max]``, ``[0, 1]`` by default) by its own minimum and maximum; constant slices stay as they
  are (:func:`~volrob.attacks.frequency.rescale.per_slice_minmax`). The rescale replaces the clip to the valid
  range and acts on whole slices: the brain mask does not apply to it (the published code knows none), and no
  quantisation budget bounds it: a voxel can move by up to 255/255. With ``rescale_in_loop=True`` (default, as
  published) every iterate is rescaled too, so the model and the SSIM term see the rescaled input and the gradient
  flows through the rescale; ``False`` rescales the final output only. ``linf_255``/``l2_255`` and the SSIM values
  of the record are measured on the returned (rescaled) ``x_adv``.

Published-code differences that are not offered: blocks are not shifted by -128 before the DCT (that changes only
the DC coefficient's quantisation), and the result is hard-rounded with the final tables (the published code returns
the last soft-rounded iterate).

There is no voxel-space ε: the record says ``eps: None`` and gives the quantisation budget instead, plus the
achieved L∞/L2 distance (``linf_255``/``l2_255``, 1/255 units), the SSIM of the objective's kind (``ssim``) and the
per-block SSIM (``ssim_per_block``, None where a block is shorter than the window). The attack is deterministic (no
randomness). Tables are optimised one sample at a time: the sign of near-zero gradients would otherwise depend on
batched float arithmetic, so a sample's result is independent of the rest of its batch.

Cost per step: ``DCT(255 x)`` and the clean image's SSIM statistics are computed once per sample; the map from
``q`` to ``x_adv`` is one autograd node with an analytic backward (:class:`_Compress`) and the SSIM term keeps no
graph (:class:`~volrob.signal.ssim.SSIMReference`, :class:`~volrob.signal.ssim.BlockSSIMReference`), so a step
adds a few full-volume passes to the network's forward and backward, not a full-volume autograd graph (the
in-loop rescale adds a few elementwise volume tensors to the graph). Progress: one unit per step of every sample.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from volrob.attacks.base import Attack, AttackResult, RunContext, StepCounter, StepProgress
from volrob.attacks.frequency.rescale import RESCALES, per_slice_minmax, spatial_axis
from volrob.attacks.frequency.soft_round import _check_alpha, annealed_alpha, soft_round
from volrob.attacks.loop import delta_norms, eval_mode, output_mode_of
from volrob.attacks.losses import LossFn, resolve_loss
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError
from volrob.signal.dct import BACKENDS, block_dct, block_idct
from volrob.signal.ssim import BlockSSIMReference, SSIMReference, block_ssim

SCALE = 255.0
SSIM_KINDS: tuple[str, ...] = ("volume", "per_block")
PUBLISHED_SSIM_WINDOW = 3
"""The window of the published per-block SSIM (gaussian, σ 1.5), also the default of ``ssim="per_block"``."""


def quantise(x: torch.Tensor, q: torch.Tensor, *, block: Sequence[int], dims: Sequence[int],
             alpha: float | None, hard: bool = False, backend: str = "matrix") -> torch.Tensor:
    """``IDCT(round(DCT(255 x) / q) * q) / 255`` blockwise; ``alpha`` soft rounding, ``hard`` exact rounding,
    neither (``alpha=None, hard=False``): no rounding (the identity up to float error)."""
    z = block_dct(x * SCALE, block, dims, backend=backend) / q
    if hard:
        z = torch.round(z)
    elif alpha is not None:
        z = soft_round(z, alpha)
    return block_idct(z * q, block, dims, backend=backend) / SCALE


class _Compress(torch.autograd.Function):
    """``q -> clip(x + (IDCT(soft_round(Z / q) q) / 255 - x) * region)`` with ``Z = DCT(255 x)`` precomputed (no
    clip when ``clip`` is false).

    The backward is analytic: clip passes the gradient where the blend lies in range, the adjoint of the
    orthonormal block IDCT is the block DCT, and ``d(soft_round(u) q)/dq = soft_round(u) - soft_round'(u) u`` with
    ``u = Z / q``. Only that factor and the in-range mask are kept for the backward. Both directions work tile by
    tile (:meth:`_Vafa._tiles`: one sample, one channel, whole blocks along the first axis), so the chain of
    elementwise passes runs on a few megabytes that stay in cache instead of streaming the volume each time.
    """

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, z: torch.Tensor, x: torch.Tensor, region: torch.Tensor,  # type: ignore[override]
                alpha: float, attack: _Vafa, clip: bool) -> torch.Tensor:
        _check_alpha(alpha)
        k = math.log(2.0 / alpha - 1.0)
        half_s = 0.5 / (1.0 - alpha)
        out, factor = torch.empty_like(q), torch.empty_like(q)
        inside = torch.empty(q.shape, dtype=torch.bool, device=q.device)
        for tile in attack._tiles(q):
            qt, rt = q[tile], region[attack._region_tile(tile)]
            u = z[tile] / qt
            base = torch.floor(u)
            t = (u - base).sub_(0.5).mul_(k).tanh_()
            rounded = (t * half_s).add_(0.5).add_(base)  # soft_round(u)
            del base
            w = rounded * qt
            t.mul_(t).neg_().add_(1.0).mul_(half_s * k).mul_(u)  # soft_round'(u) * u
            torch.sub(rounded, t, out=factor[tile])
            del u, t, rounded
            out[tile], inside[tile] = attack._blend(x[tile], w, rt, keep_mask=True, clip=clip)
        ctx.attack = attack
        ctx.save_for_backward(factor, inside, region)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        factor, inside, region = ctx.saved_tensors
        attack = ctx.attack
        grad = torch.empty_like(factor)
        for tile in attack._tiles(factor):
            g = grad_out[tile] * inside[tile]
            g.mul_(region[attack._region_tile(tile)]).div_(SCALE)
            grad[tile] = block_dct(g, attack.block, attack.dims, backend=attack.backend).mul_(factor[tile])
        return grad, None, None, None, None, None, None


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"vafa: {name} must be a positive integer, got {value!r}")
    return value


class _Vafa(Attack):
    """Shared VAFA machinery; subclasses fix the transformed axes and the default block."""

    dims: ClassVar[tuple[int, ...]] = (2, 3, 4)
    default_block: ClassVar[int] = 32

    def __init__(self, *, steps: int = 20, block: int | Sequence[int] | None = None, q_max: float = 20.0,
                 q_min: float = 5.0, step_size: float = 1.0, alpha_start: float = 0.1, ssim_weight: float = 1.0,
                 loss: str | LossFn = "auto", backend: str = "matrix", ssim: str = "volume",
                 ssim_window: int | None = None, ssim_block: int | Sequence[int] | None = None,
                 output_rescale: str = "none", rescale_axis: int = -1, rescale_in_loop: bool = True,
                 threat: ThreatModel | None = None, seed: int = 0) -> None:
        super().__init__(threat=threat, seed=seed)
        self.steps = _positive_int("steps", steps)
        block = self.default_block if block is None else block
        sizes = [block] * len(self.dims) if isinstance(block, int) else list(block)
        if len(sizes) != len(self.dims):
            raise ConfigError(f"vafa: block needs {len(self.dims)} sizes for {self.name}, got {sizes}")
        self.block = [_positive_int("block", s) for s in sizes]
        if not 0 < q_min <= q_max:
            raise ConfigError(f"vafa: need 0 < q_min <= q_max, got q_min={q_min}, q_max={q_max}")
        if not step_size > 0:
            raise ConfigError(f"vafa: step_size must be > 0, got {step_size}")
        if not 0 < alpha_start < 1:
            raise ConfigError(f"vafa: alpha_start must be in (0, 1), got {alpha_start}")
        if not ssim_weight >= 0:
            raise ConfigError(f"vafa: ssim_weight must be >= 0 (0 disables the SSIM term), got {ssim_weight}")
        if backend not in BACKENDS:
            raise ConfigError(f"vafa: backend must be one of {list(BACKENDS)}, got {backend!r}")
        if not callable(loss) and not isinstance(loss, str):
            raise ConfigError(f"vafa: loss must be a name or a callable, got {loss!r}")
        self.q_min, self.q_max = float(q_min), float(q_max)
        self.step_size, self.alpha_start, self.ssim_weight = float(step_size), float(alpha_start), float(ssim_weight)
        self.loss, self.backend = loss, backend
        if ssim not in SSIM_KINDS:
            raise ConfigError(f"vafa: ssim must be one of {list(SSIM_KINDS)}, got {ssim!r}")
        default_window = PUBLISHED_SSIM_WINDOW if ssim == "per_block" else 7
        window = default_window if ssim_window is None else ssim_window
        if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
            raise ConfigError(f"vafa: ssim_window must be a positive odd integer, got {ssim_window!r}")
        ssim_block = self.block if ssim_block is None else ssim_block
        ssim_sizes = ([ssim_block] * len(self.dims) if isinstance(ssim_block, int)
                      else list(ssim_block) if isinstance(ssim_block, Sequence) else [])
        if len(ssim_sizes) != len(self.dims):
            raise ConfigError(f"vafa: ssim_block needs {len(self.dims)} sizes for {self.name}, got {ssim_sizes}")
        self.ssim, self.ssim_window = ssim, window
        self.ssim_block = [_positive_int("ssim_block", b) for b in ssim_sizes]
        if ssim == "per_block" and min(self.ssim_block) < window:
            raise ConfigError(f"vafa: ssim_block {self.ssim_block} must be at least ssim_window {window} on every "
                              "axis for ssim='per_block'")
        if output_rescale not in RESCALES:
            raise ConfigError(f"vafa: output_rescale must be one of {list(RESCALES)}, got {output_rescale!r}")
        if not isinstance(rescale_in_loop, bool):
            raise ConfigError(f"vafa: rescale_in_loop must be true or false, got {rescale_in_loop!r}")
        self.output_rescale, self.rescale_in_loop = output_rescale, rescale_in_loop
        self.rescale_axis = spatial_axis(rescale_axis)

    def params(self) -> dict[str, Any]:
        return {"steps": self.steps, "block": list(self.block), "q_min": self.q_min, "q_max": self.q_max,
                "q_init": self.q_max, "step_size": self.step_size, "alpha_start": self.alpha_start,
                "ssim_weight": self.ssim_weight, "dct_dims": list(self.dims), "backend": self.backend,
                "ssim": self.ssim, "ssim_window": self.ssim_window, "ssim_block": list(self.ssim_block),
                "output_rescale": self.output_rescale, "rescale_axis": self.rescale_axis,
                "rescale_in_loop": self.rescale_in_loop,
                "loss": self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", "callable")}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        budget = f"quantisation q in [{self.q_min:g}, {self.q_max:g}] (1/255 units)"
        if self.output_rescale != "none":
            budget += (f"; then {self.output_rescale} along axis {self.rescale_axis} onto the valid range, on whole "
                       "slices (mask not applied), not bounded by the quantisation")
        out["threat"] = {**out["threat"], "eps": None, "norm": None, "budget": budget}
        return out

    def _tiles(self, x: torch.Tensor) -> list[tuple[slice, ...]]:
        """Index tuples covering ``x`` (B, C, D, H, W): one sample, one channel, and a slab of whole blocks along D
        (about 32 slices) when D is a transformed axis, else 32 slices; the block transform of a tile is the
        tile of the block transform."""
        depth = x.shape[2]
        if 2 in self.dims:
            b = min(self.block[self.dims.index(2)], depth)
            slab = b * max(1, 32 // b)
        else:
            slab = 32
        return [(slice(i, i + 1), slice(c, c + 1), slice(d, min(d + slab, depth)))
                for i in range(x.shape[0]) for c in range(x.shape[1]) for d in range(0, depth, slab)]

    @staticmethod
    def _region_tile(tile: tuple[slice, ...]) -> tuple[slice, ...]:
        """The region's part for ``tile``: the region has one channel, shared by all of them."""
        return (tile[0], slice(None), *tile[2:])

    def _blend(self, x: torch.Tensor, w: torch.Tensor, region: torch.Tensor, *, keep_mask: bool = False,
               clip: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``clip(x + (IDCT(w) / 255 - x) * region)`` (no clip unless ``clip``) and, if ``keep_mask``, where the
        clip passes gradients."""
        y = block_idct(w, self.block, self.dims, backend=self.backend).div_(SCALE).sub_(x).mul_(region).add_(x)
        if not clip:
            return y, torch.ones(y.shape, dtype=torch.bool, device=y.device) if keep_mask else None
        inside = (y >= self.threat.clip_min) & (y <= self.threat.clip_max) if keep_mask else None
        return y.clamp_(self.threat.clip_min, self.threat.clip_max), inside

    def _compress(self, x: torch.Tensor, z: torch.Tensor, q: torch.Tensor, region: torch.Tensor, *,
                  alpha: float | None, hard: bool, clip: bool = True) -> torch.Tensor:
        """``x_adv`` from the tables ``q`` and ``z = DCT(255 x)``; soft rounding (``alpha``) is differentiable in q.
        ``clip=False`` leaves out the clip to the valid range (the per-slice rescale takes its place)."""
        if not hard and alpha is not None:
            return _Compress.apply(q, z, x, region, alpha, self, clip)
        with torch.no_grad():
            w = torch.round(z / q).mul_(q) if hard else z.clone()
            return self._blend(x, w, region, clip=clip)[0]

    def _rescale(self, x: torch.Tensor) -> torch.Tensor:
        """The configured output rescale of ``x`` (per slice onto the valid range; differentiable)."""
        return per_slice_minmax(x, axis=self.rescale_axis, lo=self.threat.clip_min, hi=self.threat.clip_max)

    def _ssim_reference(self, x: torch.Tensor) -> SSIMReference | BlockSSIMReference:
        """The SSIM term's measure against the clean ``x`` (volume or per-block, with the recorded window)."""
        if self.ssim == "per_block":
            return BlockSSIMReference(x, block=self.ssim_block, size=self.ssim_window, spatial_dims=len(self.dims))
        return SSIMReference(x, size=self.ssim_window)

    def _per_block_ssim(self, x_adv: torch.Tensor, x: torch.Tensor) -> list[float] | None:
        """The per-block SSIM recorded for every run (blocks ``ssim_block``; window ``ssim_window`` when it is the
        objective's measure, else the published 3); None where a block is shorter than the window."""
        window = self.ssim_window if self.ssim == "per_block" else PUBLISHED_SSIM_WINDOW
        if min(self.ssim_block) < window or min(x.shape[d] for d in self.dims) < window:
            return None
        return block_ssim(x_adv, x, block=self.ssim_block, size=window, spatial_dims=len(self.dims)).tolist()

    def _per_sample_loss(self, loss_fn: LossFn, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.stack([loss_fn(logits[i:i + 1], target[i:i + 1]) for i in range(logits.shape[0])])

    def progress_total(self, batch: int) -> int:
        """One unit per step of every sample."""
        return self.steps * batch

    def optimise(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                 progress: StepProgress | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Run the attack; returns ``(x_adv, q_tables, record)``."""
        if x.ndim != 5 or not x.is_floating_point():
            raise ConfigError(f"vafa: input must be a float tensor (B, C, D, H, W), got {tuple(x.shape)}")
        if target.shape[0] != x.shape[0]:
            raise ConfigError(f"vafa: target batch {target.shape[0]} does not match input batch {x.shape[0]}")
        start = time.perf_counter()
        mode = output_mode_of(predictor)
        loss_fn = resolve_loss(self.loss, mode)
        ctx = RunContext(threat=self.threat, mode=mode, counter=StepCounter(self.progress_total(x.shape[0]), progress),
                         loss_fn=loss_fn)
        x = x.detach()
        target = target.detach()
        with eval_mode(predictor):  # like every attack: no dropout, no normalisation statistics updated
            parts = [self._optimise_one(ctx, predictor, x[i:i + 1], target[i:i + 1]) for i in range(x.shape[0])]
            x_adv = torch.cat([p[0] for p in parts])
            with torch.no_grad():
                final = self._per_sample_loss(loss_fn, predictor(x_adv), target)
        q = torch.cat([p[1] for p in parts])
        losses = [sum(v) / len(parts) for v in zip(*[p[2] for p in parts], strict=True)]
        objectives = [sum(v) / len(parts) for v in zip(*[p[3] for p in parts], strict=True)]
        quality = torch.cat([p[4] for p in parts])
        per_block = self._per_block_ssim(x_adv, x)
        record = {**self.describe(), "loss": losses, "objective": objectives,
                  "final_loss": [float(v) for v in final], **delta_norms(x, x_adv), "ssim": quality.tolist(),
                  "ssim_per_block": per_block,
                  "q_mean": q.flatten(1).mean(dim=1).tolist(), "seconds": time.perf_counter() - start}
        return x_adv.detach(), q.detach(), record

    def _optimise_one(self, ctx: RunContext, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, list[float], list[float], torch.Tensor]:
        """Optimise the tables of one sample; returns its hard-rounded (and, if configured, rescaled) ``x_adv``,
        tables, per-step losses and objectives, and the SSIM of ``x_adv``."""
        loss_fn = ctx.loss_fn
        assert loss_fn is not None  # resolved by optimise
        region = ctx.threat.region(x)
        z = block_dct(x * SCALE, self.block, self.dims, backend=self.backend)  # constant across steps
        reference = self._ssim_reference(x)
        rescale = self.output_rescale != "none"
        rescale_iterates = rescale and self.rescale_in_loop
        q = torch.full_like(x, self.q_max)
        losses: list[float] = []
        objectives: list[float] = []
        for t in range(self.steps):
            alpha = annealed_alpha(t, self.steps, self.alpha_start)
            q.requires_grad_(True)
            x_adv = self._compress(x, z, q, region, alpha=alpha, hard=False, clip=not rescale_iterates)
            if rescale_iterates:
                x_adv = self._rescale(x_adv)
            seg = self._per_sample_loss(loss_fn, predictor(x_adv), target)
            objective = seg
            if self.ssim_weight > 0:
                objective = seg - self.ssim_weight * (1.0 - reference(x_adv))
            (grad,) = torch.autograd.grad(objective.sum(), q)
            q = (q.detach() + self.step_size * grad.sign()).clamp(self.q_min, self.q_max)
            losses.append(float(seg.detach().mean()))
            objectives.append(float(objective.detach().mean()))
            ctx.counter.advance()
        x_adv = self._compress(x, z, q, region, alpha=None, hard=True, clip=not rescale)
        if rescale:
            x_adv = self._rescale(x_adv)
        return x_adv, q, losses, objectives, reference.value_and_grad(x_adv, need_grad=False)[0]

    def run(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
            progress: StepProgress | None = None) -> AttackResult:
        x_adv, _, record = self.optimise(predictor, x, target, progress=progress)
        return AttackResult(x_adv, record)


@register_attack("vafa3d", family="frequency")
class Vafa3D(_Vafa):
    """VAFA with 3D block DCT quantisation (default 32³ blocks, q_max 20, 20 steps); no voxel-space ε."""

    dims = (2, 3, 4)
    default_block = 32


@register_attack("vafa2d", family="frequency")
class Vafa2D(_Vafa):
    """VAFA with 2D block DCT quantisation on every slice (default 8×8 blocks, q_max 20); no voxel-space ε."""

    dims = (3, 4)
    default_block = 8
