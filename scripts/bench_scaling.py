"""Attack-step time and peak memory against volume size and window count: forward only, naive autograd, exact.

For each volume ``1 x 4 x D x H x W`` (default 96³, one window at ROI 96; 160×192×160; 240×240×155, the full BraTS
grid), with ROI 96³, overlap 0.5, Gaussian blending and ``sw_batch_size`` 2, three measurements, each in its own
subprocess:

- ``forward``: the predictor's forward under ``torch.no_grad()`` (MONAI's sliding window, no graph): the baseline;
- ``naive``: one attack step through plain autograd (window gradient ``autograd``: MONAI's sliding window with every
  window's graph kept until the backward): the Dice+BCE region loss of the stitched logits and its input gradient;
- ``exact``: the same step through the exact, memory-bounded gradient (window gradient ``exact``: a graph-free
  forward over every window, then each window recomputed with a graph in the backward).

The model is the tiny UNet of ``scripts/bench_attack.py`` (channels 16, 32, 64, 128; parameters frozen; ``--model
unetr`` for the tiny UNETR). Every measurement calls its step twice: ``seconds`` times the second call (steady
state), ``cold_seconds`` the first (one-time kernel set-up, first touch of fresh memory), and ``peak_mb`` covers
both. Peak memory is the process's ``ru_maxrss`` minus the baseline taken after the model and the input exist (on
CPU), or ``torch.cuda.max_memory_allocated`` above the memory allocated at that point (on CUDA, synchronised around
every timing); the JSON names which as ``peak_memory``. ``page_faults_mb`` is the memory first touched through minor
page faults in the timed call, and ``window_passes`` counts the windows the network ran in that call (a forward
pre-hook): ``windows`` for the forward and the naive step, ``2 * windows`` for the exact step (its graph-free
forward plus one recompute with a graph per window), except where the input has the ROI's size and every mode is
one direct network call.

Per size the JSON gives ``windows`` (MONAI's layout), ``voxels``, the three measurements and ``ratios``:
``exact_over_naive_time`` (steady; ``..._cold_time`` on first calls), ``exact_over_floor_time`` with the floor
``naive + forward`` seconds (an exact, memory-bounded step needs every window's stitched logits before any window's
backward can start, so it costs at least naive autograd plus one graph-free forward; see the design notes), and the
peak-memory ratios ``naive_over_forward_peak``, ``exact_over_forward_peak``, ``exact_over_naive_peak``. Also the
load average (1, 5, 15 minutes) at the start and at the end, cores, threads, versions and the command line: times
taken on a loaded machine are not comparable across runs.

``--quick`` runs 32³ (one window at ROI 32), 48×56×48 and 96×96×64 with ROI 32 (for tests; on CPU with one
thread unless ``--threads`` says otherwise). ``--window KEY=VALUE`` passes any other
:class:`~volrob.inference.predictor.SlidingWindowConfig` field (``gradient`` is set per measurement; ``fast_path``
records what the children resolved the options to). ``--host-memory retain`` runs every child under
:func:`volrob.utils.host_memory.retain_freed_memory`; ``--threads N`` sets PyTorch's CPU threads in each.

Usage: python scripts/bench_scaling.py [--quick] [--sizes 96 160x192x160 ...] [--model {unet,unetr}]
       [--device cpu|cuda] [--window KEY=VALUE ...] [--threads N] [--host-memory {system,retain}]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from volrob.errors import VolrobError

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this file may be loaded by path, outside sys.path
import _bench_common as common

FULL_SIZES: tuple[tuple[int, int, int], ...] = ((96, 96, 96), (160, 192, 160), (240, 240, 155))
QUICK_SIZES: tuple[tuple[int, int, int], ...] = ((32, 32, 32), (48, 56, 48), (96, 96, 64))
FULL_ROI, QUICK_ROI = 96, 32
MODES = ("forward", "naive", "exact")


class ChildError(RuntimeError):
    """A measurement subprocess failed; ``str(err)`` is one line."""


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process: ``spec["mode"]`` (``forward``, ``naive`` or ``exact``) on
    ``spec["shape"]``, called twice; seconds (steady, cold), peak MB above the baseline, page faults, window
    passes."""
    from volrob.attacks.losses import resolve_loss
    from volrob.utils.host_memory import retain_freed_memory

    if spec["host_memory"] == "retain" and not retain_freed_memory():
        raise SystemExit("--host-memory retain: this platform's allocator has no mallopt (glibc only)")
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device, mode = torch.device(spec["device"]), spec["mode"]
    window = common.window_config(spec["roi"], spec["window"], gradient="autograd" if mode == "naive" else "exact")
    pred = common.build_predictor(spec["model"], spec["preset"], window, device)
    x, target = common.volume_and_target(spec["shape"], device)
    loss = resolve_loss("auto", "regions")
    passes = [0]

    def count(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        passes[0] += int(args[0].shape[0])

    hooked = str(getattr(window, "compile", "off")) == "off"  # a hook would change what torch.compile traces
    if hooked:
        pred.network.register_forward_pre_hook(count)
    memory = common.PeakMemory(device)

    once = common.step_fn(mode, pred, x, target, loss)
    cold = common.timed(once, device)  # the first call also pays one-time costs
    passes[0], faulted = 0, common.faulted_mb()
    seconds = common.timed(once, device)
    fast = pred.fast_path(device).describe() if hasattr(pred, "fast_path") else None
    return {"seconds": seconds, "cold_seconds": cold, "peak_mb": memory.peak_mb(),
            "page_faults_mb": common.faulted_mb() - faulted, "window_passes": passes[0] if hooked else None,
            "torch_threads": torch.get_num_threads(), "fast_path": fast}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`child` in a fresh Python process (its own clean peak memory)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no error output)"])[-1]
        raise ChildError(f"measurement {spec['mode']} on {'x'.join(map(str, spec['shape']))} failed: {last}")
    return dict(json.loads(done.stdout))


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def size_entry(shape: Sequence[int], windows: int, res: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One size's JSON entry from its three measurements."""
    fwd, naive, exact = res["forward"], res["naive"], res["exact"]
    voxels = int(shape[0]) * int(shape[1]) * int(shape[2])
    return {
        "shape": list(shape), "volume": [1, 4, *shape], "voxels": voxels, "windows": windows,
        "path": "windowed" if windows > 1 else "direct (one network call on the whole input)",
        "forward": fwd, "naive": naive, "exact": exact,
        "ratios": {
            "exact_over_naive_time": _ratio(exact["seconds"], naive["seconds"]),
            "exact_over_naive_cold_time": _ratio(exact["cold_seconds"], naive["cold_seconds"]),
            "exact_over_floor_time": _ratio(exact["seconds"], naive["seconds"] + fwd["seconds"]),
            "naive_over_forward_peak": _ratio(naive["peak_mb"], fwd["peak_mb"]),
            "exact_over_forward_peak": _ratio(exact["peak_mb"], fwd["peak_mb"]),
            "exact_over_naive_peak": _ratio(exact["peak_mb"], naive["peak_mb"]),
        },
    }


def parser() -> argparse.ArgumentParser:
    ap = common.OneLineParser(prog="bench_scaling.py", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32³, 48×56×48, 96×96×64 at ROI 32 (for tests)")
    ap.add_argument("--sizes", nargs="+", metavar="DxHxW", help="volume sizes (a number is a cube)")
    ap.add_argument("--roi", type=int, help="ROI side (default 96; 32 with --quick)")
    ap.add_argument("--model", choices=common.MODELS, default="unet")
    ap.add_argument("--preset", choices=("tiny", "paper"), default="tiny")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    ap.add_argument("--window", action="append", default=[], metavar="KEY=VALUE",
                    help="a SlidingWindowConfig field (repeatable), e.g. amp=bf16 or sw_batch_size=4")
    ap.add_argument("--threads", type=int, help="CPU threads for PyTorch in every measurement (default: its own; "
                    "1 with --quick on CPU)")
    ap.add_argument("--host-memory", choices=("system", "retain"), default="system",
                    help="glibc allocator policy of every measurement (default: system)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.child:
            print(json.dumps(child(json.loads(args.child))))
            return 0
        roi = args.roi if args.roi is not None else (QUICK_ROI if args.quick else FULL_ROI)
        if roi < 1:
            raise common.BenchArgError(f"--roi must be a positive integer, got {roi}")
        sizes = ([common.parse_size(s) for s in args.sizes] if args.sizes
                 else list(QUICK_SIZES if args.quick else FULL_SIZES))
        if args.threads is not None and args.threads < 1:
            raise common.BenchArgError(f"--threads must be a positive integer, got {args.threads}")
        device = common.resolve_device(args.device)
        if args.threads is None and args.quick and device.type == "cpu":
            args.threads = 1  # tiny steps: one thread is as fast, and immune to other jobs on the cores
        overrides = common.parse_window_overrides(args.window, reserved=("gradient",))
        window = common.window_config(roi, overrides)
        common.build_predictor(args.model, args.preset, window, torch.device("cpu"))  # a bad model fails here
        start, load_start = time.perf_counter(), list(os.getloadavg())
        entries, fast_path, threads = [], None, None
        for shape in sizes:
            spec = {"shape": list(shape), "roi": roi, "window": overrides, "model": args.model,
                    "preset": args.preset, "device": str(device), "host_memory": args.host_memory,
                    "threads": args.threads}
            res = {mode: run_child({**spec, "mode": mode}) for mode in MODES}
            for measured in res.values():  # the same in every child: kept once, at the top
                fast_path, threads = measured.pop("fast_path"), measured.pop("torch_threads")
            entries.append(size_entry(shape, common.window_count(shape, window.roi_size, window.overlap), res))
        out = {
            "benchmark": "bench_scaling", "model": args.model, "preset": args.preset,
            "peak_memory": "cuda_max_memory_allocated" if device.type == "cuda" else "ru_maxrss",
            "host_memory": args.host_memory, "loss": "auto (regions: Dice+BCE)",
            "window": common.window_dict(window), "window_overrides": overrides, "fast_path": fast_path,
            "sizes": entries, **common.environment(device), "torch_threads": threads,
            "loadavg_start": load_start, "loadavg_end": list(os.getloadavg()),
            "seconds": time.perf_counter() - start, "command": common.command_line(__file__, argv),
        }
    except (common.BenchArgError, ChildError, VolrobError) as err:
        return int(common.fail(str(err)))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
