"""GPU throughput of 20-step PGD on a full BraTS volume through the exact gradient, against the network's own speed.

Default set-up: the paper-size UNETR (``volrob.models.create("unetr", preset="paper", roi_size=(96, 96, 96),
in_channels=4, out_channels=3)``, parameters frozen, eval mode) in a :class:`~volrob.inference.predictor.Predictor`
(ROI 96³, overlap 0.5, Gaussian blending, ``sw_batch_size`` 2, window gradient ``exact``; ``--window KEY=VALUE``
sets any :class:`~volrob.inference.predictor.SlidingWindowConfig` field, e.g. ``amp=bf16``, ``sw_batch_size=4``,
``grad_batch_size=4``), one seeded random ``1 x 4 x 240 x 240 x 155`` volume in [0, 1] with a random region target,
on ``--device`` (default ``cuda``). Three measurements, the device synchronised around every timing:

- ``attack``: the registered ``pgd`` attack (``volrob.attacks.create("pgd", steps=20, eps=8)``: L∞, ε 8/255, step
  2.5 ε / steps, random start, Dice+BCE region loss) run whole on the volume, after one untimed 1-step attack as a
  warm-up (kernel selection, cuDNN autotuning, first allocations). ``--repeats`` timed runs; ``volumes_per_hour`` is
  3600 over the median, ``seconds_per_step`` the median over the steps. The time includes everything the attack
  does: random start, every step (loss, gradient, projection) and the final scoring forward. ``peak_mb`` is
  ``torch.cuda.max_memory_allocated`` during the timed runs above the memory allocated before them (null on CPU).
- ``raw``: the network alone on a batch of ``sw_batch_size`` windows of the ROI's size, called through the same
  predictor (an input the size of the ROI is one direct network call: the same precision, memory format and
  compilation settings as the attack's windows, plus the elementwise input normalisation). ``forward``: under
  ``torch.no_grad()``; ``fwd_bwd``: with a graph and a backward to the input (``torch.autograd.grad``, parameters
  frozen, as in the attack). Windows per second over ``--raw-iters`` calls after ``--raw-warmup`` untimed ones. When
  ``grad_batch_size`` differs from ``sw_batch_size``, ``fwd_bwd`` is also measured at ``grad_batch_size`` windows
  per call (the batch the exact backward recomputes).
- ``window_passes``: windows an exact attack runs: per step one graph-free forward over all N windows (the stitched
  logits the loss needs) plus one recompute forward+backward per window; then one graph-free forward over all N
  windows to score the result. With S steps: ``graph_free = (S + 1) * N`` and ``fwd_bwd = S * N``. The warm-up
  attack's passes are counted (a forward pre-hook on the network; not with ``compile``) and checked against this.

Fractions (each formula is also in the JSON): ``fraction_of_fwd_bwd`` = ``S * N / raw_fwd_bwd`` over the attack's
median seconds, the share of the network's raw forward+backward throughput the attack reaches on its gradient
windows (goal ≥ 0.70); ``fraction_of_floor`` = ``(S * N / raw_fwd_bwd + (S + 1) * N / raw_forward)`` over the same
seconds: against the floor of an exact, memory-bounded attack, which cannot skip the graph-free forward of each
step; ``ceiling_fraction_of_fwd_bwd`` = the first over the second's numerator, the most the first can reach.

Prints one JSON object: the settings, the device name, torch / CUDA / cuDNN versions and precision flags, the window
configuration and the predictor's resolved fast path, the load average at the start and at the end, the command.

``--device cpu --quick`` runs the tiny UNETR at ROI 32 on a 1×4×48×48×32 volume (4 windows), 2 steps, one repeat,
one CPU thread unless ``--threads`` says otherwise: a check of the script that finishes in well under a minute.

Usage: python scripts/bench_gpu_pgd.py [--steps 20] [--shape 240 240 155] [--preset paper] [--repeats 2]
       [--window amp=bf16 ...] [--device cuda] [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from volrob.errors import VolrobError

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this file may be loaded by path, outside sys.path
import _bench_common as common

GOAL = 0.70
"""Target share of the raw forward+backward throughput."""
FULL = {"shape": (240, 240, 155), "roi": 96, "preset": "paper", "steps": 20, "repeats": 2, "raw_iters": 20,
        "raw_warmup": 5}
QUICK = {"shape": (48, 48, 32), "roi": 32, "preset": "tiny", "steps": 2, "repeats": 1, "raw_iters": 3,
         "raw_warmup": 1}

FORMULAS = {
    "graph_free_passes": "(S + 1) * N",
    "fwd_bwd_passes": "S * N",
    "fraction_of_fwd_bwd": "(S * N / raw_fwd_bwd_windows_per_s) / attack_seconds",
    "fraction_of_floor": "(S * N / raw_fwd_bwd_windows_per_s + (S + 1) * N / raw_forward_windows_per_s)"
                         " / attack_seconds",
    "ceiling_fraction_of_fwd_bwd": "(S * N / raw_fwd_bwd_windows_per_s) / (S * N / raw_fwd_bwd_windows_per_s"
                                   " + (S + 1) * N / raw_forward_windows_per_s)",
    "volumes_per_hour": "3600 / attack_seconds",
    "where": "S = attack steps, N = windows of the volume, attack_seconds = median of the timed attacks",
}


def expected_passes(steps: int, windows: int) -> dict[str, int]:
    """Window passes of an exact ``steps``-step attack over ``windows`` windows (one restart)."""
    return {"graph_free": (steps + 1) * windows, "fwd_bwd": steps * windows}


def fractions(steps: int, windows: int, attack_seconds: float, raw_forward: float,
              raw_fwd_bwd: float) -> dict[str, float]:
    """The throughput fractions of :data:`FORMULAS` (rates in windows per second)."""
    ideal = steps * windows / raw_fwd_bwd
    floor = ideal + (steps + 1) * windows / raw_forward
    return {"ideal_fwd_bwd_seconds": ideal, "floor_seconds": floor,
            "fraction_of_fwd_bwd": ideal / attack_seconds, "fraction_of_floor": floor / attack_seconds,
            "ceiling_fraction_of_fwd_bwd": ideal / floor, "volumes_per_hour": 3600.0 / attack_seconds}


def raw_rate(pred: Any, batch: int, roi: tuple[int, ...], device: torch.device, *, grad: bool, iters: int,
             warmup: int) -> dict[str, Any]:
    """Windows per second of the network on ``batch`` ROI-sized windows through ``pred`` (one direct call each):
    forward under ``no_grad``, or forward with a graph and the backward to the input."""
    gen = torch.Generator().manual_seed(1)
    xb = torch.rand(batch, 4, *roi, generator=gen).to(device)
    gout = torch.randn(batch, 3, *roi, generator=gen).to(device)

    def once() -> None:
        if not grad:
            with torch.no_grad():
                pred(xb)
            return
        xg = xb.clone().requires_grad_(True)
        torch.autograd.grad(pred(xg), xg, gout)

    for _ in range(warmup):
        once()
    seconds = common.timed(lambda: [once() for _ in range(iters)], device)
    return {"batch": batch, "iters": iters, "seconds": seconds, "windows_per_s": batch * iters / seconds}


def _count_passes(network: torch.nn.Module) -> tuple[dict[str, int], Any]:
    """Counters of the windows ``network`` runs with and without a graph, and the hook's handle."""
    counts = {"graph_free": 0, "fwd_bwd": 0}

    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        counts["fwd_bwd" if torch.is_grad_enabled() else "graph_free"] += int(args[0].shape[0])

    return counts, network.register_forward_pre_hook(hook)


def measure(args: argparse.Namespace, device: torch.device, overrides: dict[str, Any]) -> dict[str, Any]:
    """Every measurement of the module docstring; the JSON object (without the run's environment)."""
    import volrob.attacks as attacks

    window = common.window_config(args.roi, overrides)
    if window.gradient != "exact":
        raise common.BenchArgError(f"--window gradient={window.gradient}: this benchmark measures the exact "
                                   "gradient (its pass formula assumes it)")
    roi = tuple(int(r) for r in window.roi_size)
    if tuple(args.shape) == roi:
        raise common.BenchArgError(f"--shape {list(args.shape)} equals the ROI: no sliding window to measure")
    pred = common.build_predictor(args.model, args.preset, window, device)
    x, target = common.volume_and_target(args.shape, device)
    windows = common.window_count(args.shape, roi, window.overlap)
    grad_batch = int(getattr(window, "grad_batch_size", 1))
    timing = {"iters": args.raw_iters, "warmup": args.raw_warmup}
    raw = {"forward": raw_rate(pred, window.sw_batch_size, roi, device, grad=False, **timing),
           "fwd_bwd": raw_rate(pred, window.sw_batch_size, roi, device, grad=True, **timing)}
    if grad_batch != window.sw_batch_size:
        raw["fwd_bwd_grad_batch"] = raw_rate(pred, grad_batch, roi, device, grad=True, **timing)

    # warm-up: one untimed 1-step attack, its window passes counted (a hook would change what torch.compile traces)
    compiled = str(getattr(window, "compile", "off")) != "off"
    counts, handle = _count_passes(pred.network) if not compiled else (None, None)
    warm_seconds = common.timed(lambda: attacks.create("pgd", steps=1, eps=args.eps).run(pred, x, target), device)
    if handle is not None:
        handle.remove()
    attack = attacks.create("pgd", steps=args.steps, eps=args.eps)
    memory = common.PeakMemory(device)
    seconds, records = [], []
    for _ in range(args.repeats):
        seconds.append(common.timed(lambda: records.append(attack.run(pred, x, target).record), device))
    median = statistics.median(seconds)
    record = records[-1]
    loss = record.get("loss", [])
    fast = pred.fast_path(device).describe() if hasattr(pred, "fast_path") else None
    frac = fractions(args.steps, windows, median, raw["forward"]["windows_per_s"], raw["fwd_bwd"]["windows_per_s"])
    return {
        "settings": {"model": args.model, "preset": args.preset, "volume": [1, 4, *args.shape], "roi": list(roi),
                     "steps": args.steps, "eps_255": args.eps, "repeats": args.repeats, "raw_iters": args.raw_iters,
                     "raw_warmup": args.raw_warmup, "attack": attack.describe(),
                     "window": common.window_dict(window), "window_overrides": overrides, "fast_path": fast},
        "windows": windows,
        "attack": {"seconds": seconds, "median_seconds": median, "min_seconds": min(seconds),
                   "seconds_per_step": median / args.steps, "volumes_per_hour": 3600.0 / median,
                   "warmup_1_step_seconds": warm_seconds,
                   "peak_mb": memory.peak_mb() if device.type == "cuda" else None,
                   "loss_first_last": [loss[0], loss[-1]] if loss else None},
        "raw": raw,
        "window_passes": {"per_attack": expected_passes(args.steps, windows),
                          "warmup_1_step_expected": expected_passes(1, windows),
                          "warmup_1_step_counted": counts},
        **frac, "goal_fraction_of_fwd_bwd": GOAL, "meets_goal": frac["fraction_of_fwd_bwd"] >= GOAL,
        "formulas": FORMULAS,
    }


def parser() -> argparse.ArgumentParser:
    ap = common.OneLineParser(prog="bench_gpu_pgd.py", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --quick for a check)")
    ap.add_argument("--quick", action="store_true", help="tiny UNETR, ROI 32, 1x4x48x48x32, 2 steps, 1 repeat")
    ap.add_argument("--steps", type=int, help="PGD steps (default 20; 2 with --quick)")
    ap.add_argument("--eps", type=float, default=8.0, help="L-inf budget in 1/255 units (default 8)")
    ap.add_argument("--shape", type=int, nargs=3, metavar=("D", "H", "W"), help="volume (default 240 240 155)")
    ap.add_argument("--roi", type=int, help="ROI side (default 96; 32 with --quick)")
    ap.add_argument("--model", choices=common.MODELS, default="unetr")
    ap.add_argument("--preset", choices=("tiny", "paper"), help="model size (default paper; tiny with --quick)")
    ap.add_argument("--window", action="append", default=[], metavar="KEY=VALUE",
                    help="a SlidingWindowConfig field (repeatable), e.g. amp=bf16, grad_batch_size=4")
    ap.add_argument("--repeats", type=int, help="timed attack runs (default 2; 1 with --quick)")
    ap.add_argument("--raw-iters", type=int, help="timed raw network calls (default 20; 3 with --quick)")
    ap.add_argument("--raw-warmup", type=int, help="untimed raw calls first (default 5; 1 with --quick)")
    ap.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's own; 1 with --quick "
                    "on CPU)")
    return ap


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults (full or ``--quick``) and check the numbers; a :class:`BenchArgError` when one is bad."""
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.shape = tuple(int(s) for s in args.shape)
    for name in ("steps", "repeats", "raw_iters", "roi", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise common.BenchArgError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if min(args.shape) < 1:
        raise common.BenchArgError(f"--shape must be three positive integers, got {list(args.shape)}")
    if args.raw_warmup < 0:
        raise common.BenchArgError(f"--raw-warmup must be >= 0, got {args.raw_warmup}")
    if not args.eps > 0:
        raise common.BenchArgError(f"--eps must be > 0 (1/255 units), got {args.eps}")
    return args


def main(argv: list[str] | None = None) -> int:
    threads = torch.get_num_threads()
    try:
        args = resolve_args(parser().parse_args(argv))
        device = common.resolve_device(args.device)
        overrides = common.parse_window_overrides(args.window)
        if args.threads is None and args.quick and device.type == "cpu":
            args.threads = 1  # a tiny workload: one thread is as fast, and immune to other jobs on the cores
        if args.threads:
            torch.set_num_threads(args.threads)
        start, load_start = time.perf_counter(), list(os.getloadavg())
        out = measure(args, device, overrides)
        out.update({"environment": common.environment(device), "loadavg_start": load_start,
                    "loadavg_end": list(os.getloadavg()), "seconds": time.perf_counter() - start,
                    "command": common.command_line(__file__, argv)})
    except (common.BenchArgError, VolrobError) as err:
        return int(common.fail(str(err)))
    finally:
        torch.set_num_threads(threads)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
