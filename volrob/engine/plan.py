"""How much a unit of work costs, how units are spread over ranks, and how long a run will take.

Costs are in seconds on this machine: a unit's network passes (attack steps × windows × the timed forward or
forward+backward of one window of the model, an extra graph-free forward per step for the exact windowed
gradient, one scoring forward per target, snapshot and band) plus a fixed allowance per scoring for mapping back
and the metrics. The per-model timings come from passes on one ROI-sized random input, timed once by rank 0 and
broadcast, so every rank computes the same costs and the same assignment. The window count of every model comes
from the first case of the run (cases of one data set are much alike).

Assignment: units sorted by cost, largest first, each given to the rank where it adds least — that rank's load
plus, when the rank does not yet hold the unit's case, the cost of preparing and scoring that case clean.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from volrob.engine.cells import Cell, CleanUnit, Unit
from volrob.inference.predictor import Predictor

SCORING_OVERHEAD_S = 0.3
"""Mapping one prediction back to the source grid and computing its metrics (a 240×240×155 case, one CPU core)."""


@dataclass(frozen=True)
class ModelTiming:
    """Seconds of one graph-free forward and of one forward+backward (input gradient) on one ROI window."""

    forward_s: float
    backward_s: float
    windows: int


def window_count(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """How many sliding windows MONAI places on ``shape`` (one when the input is the ROI)."""
    n = 1
    for size, r in zip(shape, roi, strict=True):
        if size <= r:
            continue
        interval = max(int(r * (1 - overlap)), 1)
        n *= math.ceil((size - r) / interval) + 1
    return n


def time_model(predictor: Predictor, channels: int, shape: Sequence[int], device: torch.device) -> ModelTiming:
    """Timed passes of ``predictor``'s network on one ROI window (one warm-up pass first)."""
    roi = tuple(predictor.window.roi_size)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((1, channels, *roi), generator=gen).to(device)

    def forward() -> float:
        tic = time.perf_counter()
        with torch.no_grad():
            predictor(x)
        _sync(device)
        return time.perf_counter() - tic

    def backward() -> float:
        tic = time.perf_counter()
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(predictor(xg).float().sum(), xg)
        _sync(device)
        return time.perf_counter() - tic

    forward()
    return ModelTiming(forward(), backward(), window_count(shape, roi, predictor.window.overlap))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def attack_passes(cell: Cell) -> tuple[int, int]:
    """(forward passes, forward+backward passes) the attack of ``cell`` makes on one case, per source model: none
    for attacks that never run the model, one per query for query attacks, and per gradient step one
    forward+backward and one graph-free forward (the exact windowed gradient's), plus a final forward."""
    atk = cell.create_attack(0)
    if atk.model_access == "none":
        return 0, 0
    steps = atk.progress_total(1)
    return (steps, 0) if atk.model_access == "queries" else (steps + 1, steps)


def unit_cost(cell: Cell, members: Sequence[str], timings: dict[str, ModelTiming], scorings: int) -> float:
    """Estimated seconds of one attack unit: crafting on ``members`` (the source or its ensemble) and
    ``scorings`` scored inputs per target."""
    forwards, backwards = attack_passes(cell)
    craft = sum((forwards * t.forward_s + backwards * t.backward_s) * t.windows
                for t in (timings[m] for m in members))
    score = sum(scorings * (timings[t].forward_s * timings[t].windows + SCORING_OVERHEAD_S) for t in cell.targets)
    return craft + score


def clean_cost(model: str, timings: dict[str, ModelTiming]) -> float:
    t = timings[model]
    return t.forward_s * t.windows + SCORING_OVERHEAD_S


def assign(units: Sequence[Unit], cleans: Sequence[CleanUnit], costs: dict[str, float], case_cost: dict[str, float],
           world_size: int) -> list[tuple[list[Unit], list[CleanUnit]]]:
    """Each rank's units and clean units (see the module docstring); deterministic for the same inputs."""
    loads = [0.0] * world_size
    held: list[set[str]] = [set() for _ in range(world_size)]
    out: list[tuple[list[Unit], list[CleanUnit]]] = [([], []) for _ in range(world_size)]
    for u in sorted(units, key=lambda u: (-costs[u.key], u.key)):
        extra = [loads[r] + costs[u.key] + (0.0 if u.case in held[r] else case_cost[u.case])
                 for r in range(world_size)]
        r = min(range(world_size), key=lambda i: (extra[i], i))
        loads[r] = extra[r]
        held[r].add(u.case)
        out[r][0].append(u)
    for c in sorted(cleans, key=lambda c: (-costs[c.key], c.key)):
        holders = [r for r in range(world_size) if c.case in held[r]]
        pool = holders or list(range(world_size))
        r = min(pool, key=lambda i: (loads[i], i))
        loads[r] += costs[c.key]
        held[r].add(c.case)
        out[r][1].append(c)
    return out
