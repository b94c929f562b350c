"""Square3D: the L∞ Square Attack (Andriushchenko et al., ECCV 2020) generalised to 3D segmentation volumes.

A query-based black-box attack: it uses only the predictor's outputs (forward passes under ``torch.no_grad`` on a
detached input, never a gradient) and maximises the per-sample attack loss of the prediction against ``target``.

Per sample, from a generator seeded by ``seed`` (so a sample gives the same result alone or in a batch):

1. **Stripe start**: every channel gets a random ``±eps`` per ``(h, w)`` column, constant along the first spatial
   axis (the paper's vertical stripes, in 3D), projected to the threat set; its evaluation is query 1.
2. **Cube updates**: each further query draws a cube of side ``s = round((p(t) * voxels) ** (1/3))`` (at least 1,
   at most the smallest spatial size) at a uniform position among those whose cube touches the threat region,
   sets the cube of every channel to its own random ``±eps``, projects (budget, valid range, region) and keeps the
   candidate only if the loss strictly increases. A draw that would not change the current point is redrawn
   (without a query) a bounded number of times.
3. ``p(t)`` is the paper's piecewise schedule: ``p_init`` halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and
   8000 of 10000 iterations, rescaled to ``schedule_queries - 1`` iterations (``schedule_queries`` defaults to the
   budget ``queries``; fixing it lets a shorter run reproduce a prefix of a longer one exactly).

The budget ``queries`` counts every forward pass of the predictor per sample, the start included. A sample whose
threat set is a single point (``eps == 0`` or no voxel may change) stops after query 1. ``checkpoints`` lists query
counts at which the current best ``x_adv`` is kept (:attr:`SquareResult.snapshots`), so Dice can be scored at
several budgets from one run. Progress: one unit per query of every sample (``queries * batch`` in all).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from volrob.attacks.base import Attack, AttackResult, RunContext, StepCounter, StepProgress
from volrob.attacks.loop import (
    build_threat,
    check_inputs,
    check_steps,
    delta_norms,
    eval_mode,
    output_mode_of,
    per_sample,
    per_sample_generator,
)
from volrob.attacks.losses import LossFn, resolve_loss
from volrob.attacks.registry import register_attack
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError

# The paper's schedule: iteration thresholds (out of 10000) after which p is halved once more.
SCHEDULE_STEPS: tuple[int, ...] = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
MAX_REDRAWS = 32


def schedule_fraction(p_init: float, iteration: int, iterations: int) -> float:
    """Fraction of voxels per update at ``iteration`` (0-based) of ``iterations``: ``p_init / 2**k`` where ``k``
    counts the thresholds of :data:`SCHEDULE_STEPS` passed on the rescaled 10000-iteration axis."""
    scaled = int(iteration / max(iterations, 1) * 10000)
    return p_init / 2 ** sum(scaled > step for step in SCHEDULE_STEPS)


def cube_side(p: float, spatial: Sequence[int]) -> int:
    """Side of a cube holding a fraction ``p`` of the voxels: ``round((p * voxels) ** (1/3))`` in
    ``[1, min(spatial)]``."""
    voxels = 1
    for n in spatial:
        voxels *= int(n)
    return int(min(max(round((p * voxels) ** (1.0 / 3.0)), 1), min(spatial)))


@dataclass
class SquareResult(AttackResult):
    """An :class:`AttackResult` plus ``snapshots``: checkpoint query count -> best ``x_adv`` ``(B, C, *spatial)``
    after that many queries (a sample that stopped earlier contributes its final point)."""

    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class _SampleRun:
    """What one sample's attack produced."""

    x_adv: torch.Tensor
    curve: list[float]
    snapshots: dict[int, torch.Tensor]


def _check_fraction(p_init: Any) -> float:
    if isinstance(p_init, bool) or not isinstance(p_init, (int, float)) or not 0 < p_init <= 1:
        raise ConfigError(f"attack: p_init must be a number in (0, 1], got {p_init!r}")
    return float(p_init)


def _check_checkpoints(checkpoints: Any, queries: int) -> tuple[int, ...]:
    if checkpoints is None:
        return ()
    if not isinstance(checkpoints, (list, tuple)):
        raise ConfigError(f"attack: checkpoints must be a list of query counts, got {type(checkpoints).__name__}")
    for q in checkpoints:
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= queries:
            raise ConfigError(f"attack: checkpoints must be integers in [1, queries={queries}], got {q!r}")
    if any(a >= b for a, b in itertools.pairwise(checkpoints)):
        raise ConfigError(f"attack: checkpoints must be strictly increasing, got {list(checkpoints)}")
    return tuple(checkpoints)


@register_attack("square3d", family="query",
                 description="Square Attack (L-inf) with random cube updates; black-box, predictions only")
class Square3D(Attack):
    """Square Attack (L∞) with random cube updates; black-box, uses predictions only."""

    model_access = "queries"

    norms: ClassVar[tuple[str, ...]] = ("linf",)  # the threat norms this attack supports

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, queries: int = 1000,
                 p_init: float = 0.05, loss: str | LossFn = "auto", checkpoints: Sequence[int] | None = None,
                 schedule_queries: int | None = None, seed: int = 0) -> None:
        super().__init__(threat=build_threat(threat, eps, norm, mask), seed=seed)
        if self.threat.norm != "linf":
            raise ConfigError(f"attack: square3d supports only norm 'linf', got {self.threat.norm!r}")
        self.queries = check_steps(queries, minimum=1, name="queries")
        self.p_init = _check_fraction(p_init)
        if not (callable(loss) or isinstance(loss, str)):
            raise ConfigError(f"attack: loss must be a name or a callable, got {type(loss).__name__}")
        self.loss = loss
        self.checkpoints = _check_checkpoints(checkpoints, self.queries)
        self.schedule_queries = self.queries if schedule_queries is None else check_steps(
            schedule_queries, minimum=1, name="schedule_queries")

    def params(self) -> dict[str, Any]:
        loss = self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", "callable")
        return {"queries": self.queries, "p_init": self.p_init, "loss": loss, "checkpoints": list(self.checkpoints),
                "schedule_queries": self.schedule_queries}

    def progress_total(self, batch: int) -> int:
        """One unit per query of every sample (a sample that stops early reports its unused queries at once)."""
        return self.queries * batch

    def run(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
            progress: StepProgress | None = None) -> SquareResult:
        mode = output_mode_of(predictor)
        check_inputs(x, target, mode)
        self.threat.check_batch(x.shape[0])
        ctx = RunContext(threat=self.threat, mode=mode, counter=StepCounter(self.progress_total(x.shape[0]), progress),
                         loss_fn=resolve_loss(self.loss, mode))
        t0 = time.perf_counter()
        x, target = x.detach(), target.detach()
        runs: list[_SampleRun] = []
        with eval_mode(predictor), torch.no_grad():
            for i in range(x.shape[0]):  # one sample at a time: bitwise batch-independent
                runs.append(self._attack_sample(ctx.for_sample(i), predictor, x[i:i + 1], target[i:i + 1]))
        x_adv = torch.cat([r.x_adv for r in runs])
        curves = [r.curve for r in runs]
        longest = max(len(c) for c in curves)
        padded = torch.tensor([c + [c[-1]] * (longest - len(c)) for c in curves], dtype=torch.float64)
        record = {**self.describe(), "loss": padded.mean(0).tolist(), "loss_per_query": curves,
                  "queries_used": [len(c) for c in curves], "final_loss": [c[-1] for c in curves],
                  "checkpoints": list(self.checkpoints), **delta_norms(x, x_adv),
                  "seconds": time.perf_counter() - t0}
        snapshots = {q: torch.cat([r.snapshots[q] for r in runs]) for q in self.checkpoints}
        return SquareResult(x_adv, record, snapshots)

    def _attack_sample(self, ctx: RunContext, predictor: torch.nn.Module, x: torch.Tensor,
                       target: torch.Tensor) -> _SampleRun:
        """One sample ``(1, C, *spatial)`` under ``ctx.threat`` (its scalar-budget threat model)."""
        gen = per_sample_generator(self.seed)
        threat, loss_fn = ctx.threat, ctx.loss_fn
        assert loss_fn is not None  # resolved by run
        region = threat.region(x)
        radius = threat.radius
        channels, spatial = x.shape[1], tuple(x.shape[2:])

        def loss_of(candidate: torch.Tensor) -> float:
            loss = float(per_sample(loss_fn, predictor(candidate), target)[0])
            ctx.counter.advance()
            return loss

        stripes = torch.randint(0, 2, (1, channels, 1, *spatial[1:]), generator=gen, dtype=torch.float64) * 2 - 1
        best = threat.project(x, x + (stripes * radius).to(device=x.device, dtype=x.dtype) * region, region)
        curve = [loss_of(best)]
        snapshots: dict[int, torch.Tensor] = {}
        corners = _Corners(region[0, 0])
        if radius > 0 and bool(region.any()):
            iterations = self.schedule_queries - 1
            while len(curve) < self.queries:
                if len(curve) in self.checkpoints:
                    snapshots[len(curve)] = best.clone()
                side = cube_side(schedule_fraction(self.p_init, len(curve) - 1, iterations), spatial)
                candidate = self._candidate(threat, x, best, region, corners.window(side, gen), gen)
                loss = loss_of(candidate)
                if loss > curve[-1]:
                    best = candidate
                    curve.append(loss)
                else:
                    curve.append(curve[-1])
        if len(curve) < self.queries:  # stopped early: the unused queries count as done
            ctx.counter.advance(self.queries - len(curve))
        for q in self.checkpoints:
            snapshots.setdefault(q, best.clone())
        return _SampleRun(best, curve, snapshots)

    def _candidate(self, threat: ThreatModel, x: torch.Tensor, best: torch.Tensor, region: torch.Tensor,
                   window: tuple[slice, ...], gen: torch.Generator) -> torch.Tensor:
        """``best`` with every channel of the cube ``window`` set to its own random ``±eps`` (projected); redrawn
        up to :data:`MAX_REDRAWS` times while the cube would stay as it is."""
        index = (slice(None), slice(None), *window)
        x_win, best_win, region_win = x[index], best[index], region[index]
        for _ in range(MAX_REDRAWS):
            signs = torch.randint(0, 2, (1, x.shape[1], 1, 1, 1), generator=gen, dtype=torch.float64) * 2 - 1
            step = (signs * threat.radius).to(device=x.device, dtype=x.dtype)
            new_win = threat.project(x_win, x_win + step * region_win, region_win)
            if not torch.equal(new_win, best_win):
                break
        candidate = best.clone()
        candidate[index] = new_win
        return candidate


class _Corners:
    """Uniform draws of cube positions whose cube touches the region (``(D, H, W)`` float mask); the valid corners
    of the last side length are cached (the schedule only shrinks the side). One per sample and call: a local
    helper, never stored on the attack."""

    def __init__(self, region: torch.Tensor) -> None:
        self.region = region
        self._side = 0
        self._flat = torch.empty(0, dtype=torch.long)
        self._shape: tuple[int, ...] = ()

    def window(self, side: int, gen: torch.Generator) -> tuple[slice, ...]:
        if side != self._side:
            touches = F.max_pool3d(self.region[None, None], kernel_size=side, stride=1)[0, 0] > 0
            self._side, self._shape = side, tuple(touches.shape)
            self._flat = torch.nonzero(touches.flatten()).flatten().cpu()
        pick = int(self._flat[int(torch.randint(0, len(self._flat), (1,), generator=gen))])
        corner = []
        for n in reversed(self._shape):
            corner.append(pick % n)
            pick //= n
        return tuple(slice(c, c + side) for c in reversed(corner))
