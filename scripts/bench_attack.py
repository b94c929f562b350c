"""Memory and time of one attack step on a BraTS-size volume: forward only, naive autograd, exact windowed gradient.

Each measurement runs in its own subprocess so its peak RSS is clean (``ru_maxrss`` minus the baseline taken after
building the model and the input). Forward, naive and exact steps run twice in their process: ``seconds`` times
the second call (steady state), ``cold_seconds`` the first; the peak covers both. Prints one JSON object, with the
load average (1, 5, 15 minutes) at the start and at the end of the run: times taken on a loaded machine are not
comparable across runs.

Attack steps: ``pgd``, ``vafa3d`` and ``pgd@autograd`` (the same PGD through the naive predictor, plain autograd
through the sliding window) each run as whole attacks of 1 and of 5 steps, alternating (the three 1-step attacks,
then the three 5-step ones) so a change of load on a shared machine falls on all. The time of one step is
``(T(5) - T(1)) / 4``: what each further step costs, averaged over four, without the per-attack set-up (PGD's
random start; VAFA's DCT of the input and the reference's SSIM statistics) and the final scoring forward.
``vafa_over_pgd_step_time`` compares those steps, ``vafa_over_pgd_one_step_attack_time`` the 1-step attacks,
set-up included; ``attack_step_time_ratio_vs_naive`` compares a further PGD step with the exact gradient against
naive autograd inside a running attack, ``attack_peak_mem_ratio_vs_naive`` the attacks' peak memory.
``page_faults_mb`` is the memory first touched through minor page faults (``ru_minflt``) in the timed call or
attack, ``step_page_faults_mb`` the same per further attack step.

Host memory: ``--host-memory system`` (default) leaves glibc's allocator as a plain Python process has it;
``--host-memory retain`` runs every child under :func:`volrob.utils.host_memory.retain_freed_memory` (what the
``volrob`` command does), which keeps freed blocks for reuse instead of page-faulting them in again every step.
Both sides of every ratio run under the same policy; the JSON records it as ``host_memory``.

Usage: python scripts/bench_attack.py [--small] [--host-memory {system,retain}]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this file may be loaded by path, outside sys.path
import _bench_common as common

FULL, SMALL_FLAT = (160, 192, 160), (112, 112, 112)
QUICK, QUICK_FLAT = (64, 72, 64), (40, 40, 40)


def _setup(shape: tuple[int, ...], roi: int, gradient: str) -> tuple[Any, torch.Tensor, torch.Tensor]:
    from volrob.inference.predictor import Predictor, SlidingWindowConfig
    from volrob.models import create

    torch.manual_seed(0)
    net = create("unet", in_channels=4, out_channels=3, preset="tiny", roi_size=(roi,) * 3,
                 channels=(16, 32, 64, 128)).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    window = SlidingWindowConfig(roi_size=(roi,) * 3, overlap=0.5, mode="gaussian", sw_batch_size=2,
                                 gradient=gradient)
    pred = Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=window).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 4, *shape, generator=gen)
    target = (torch.rand(1, 3, *shape, generator=gen) > 0.9).float()
    return pred, x, target


def child(mode: str, shape: tuple[int, ...], roi: int, host_memory: str) -> dict[str, Any]:
    """One measurement: ``forward``, ``naive``, ``exact`` (one loss + input-gradient step) or a whole attack
    ``NAME[@GRADIENT]:STEPS`` (gradient ``exact`` unless given, e.g. ``pgd@autograd:5``)."""
    from volrob.attacks.losses import resolve_loss
    from volrob.utils.host_memory import retain_freed_memory

    if host_memory == "retain" and not retain_freed_memory():
        raise SystemExit("--host-memory retain: this platform's allocator has no mallopt (glibc only)")
    spec, _, steps = mode.partition(":")
    name, _, gradient = spec.partition("@")
    pred, x, target = _setup(shape, roi, "autograd" if mode == "naive" else gradient or "exact")
    loss = resolve_loss("auto", "regions")
    base = common.rss_peak_mb()
    if mode in ("forward", "naive", "exact"):
        once = common.step_fn(mode, pred, x, target, loss)
        start = time.perf_counter()
        once()  # the first call also pays one-time costs (kernel set-up, first touch of fresh memory)
        cold = time.perf_counter() - start
        faulted, start = common.faulted_mb(), time.perf_counter()
        once()
        return {"seconds": time.perf_counter() - start, "cold_seconds": cold, "peak_mb": common.rss_peak_mb() - base,
                "page_faults_mb": common.faulted_mb() - faulted}
    import volrob.attacks as attacks

    faulted, start = common.faulted_mb(), time.perf_counter()
    attacks.create(name, steps=int(steps or 1)).run(pred, x, target)
    return {"seconds": time.perf_counter() - start, "peak_mb": common.rss_peak_mb() - base,
            "page_faults_mb": common.faulted_mb() - faulted}


def _run_child(mode: str, shape: tuple[int, ...], roi: int, host_memory: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--shape", *map(str, shape), "--roi", str(roi),
           "--host-memory", host_memory]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench child {mode} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


LONG = 5  # steps of the longer attack run


def attack_steps(names: list[str], shape: tuple[int, ...], roi: int,
                 host_memory: str) -> dict[str, dict[str, Any]]:
    """Whole attacks of 1 and ``LONG`` steps (own processes, the attacks alternating); ``step_seconds`` is the
    difference per extra step."""
    runs = {(name, steps): _run_child(f"{name}:{steps}", shape, roi, host_memory)
            for steps in (1, LONG) for name in names}
    out = {}
    for name in names:
        one, long = runs[name, 1], runs[name, LONG]
        out[name] = {"one_step": one, f"{LONG}_steps": long,
                     "step_seconds": (long["seconds"] - one["seconds"]) / (LONG - 1),
                     "step_page_faults_mb": (long["page_faults_mb"] - one["page_faults_mb"]) / (LONG - 1),
                     "peak_mb": max(one["peak_mb"], long["peak_mb"])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick run on small volumes with ROI 32")
    parser.add_argument("--host-memory", choices=("system", "retain"), default="system",
                        help="glibc allocator policy of every measurement (default: system)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--roi", type=int, default=96, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, tuple(args.shape), args.roi, args.host_memory)))
        return
    load_start = list(os.getloadavg())
    shape, flat_shape, roi = (QUICK, QUICK_FLAT, 32) if args.small else (FULL, SMALL_FLAT, 96)
    res = {mode: _run_child(mode, shape, roi, args.host_memory) for mode in ("forward", "naive", "exact")}
    flat = _run_child("exact", flat_shape, roi, args.host_memory)
    import volrob.attacks as attacks

    have = [name for name in ("pgd", "vafa3d") if name in attacks.available()]
    steps = attack_steps([*have, "pgd@autograd"], shape, roi, args.host_memory) if len(have) == 2 else {}
    fwd = res["forward"]
    out = {
        "host_memory": args.host_memory, "volume": [1, 4, *shape], "roi": roi, "overlap": 0.5, "mode": "gaussian",
        "sw_batch_size": 2,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "forward": fwd, "naive_step": res["naive"], "exact_step": res["exact"],
        "peak_mem_ratio_vs_forward": res["exact"]["peak_mb"] / fwd["peak_mb"],
        "naive_peak_mem_ratio_vs_forward": res["naive"]["peak_mb"] / fwd["peak_mb"],
        "step_time_ratio_vs_naive": res["exact"]["seconds"] / res["naive"]["seconds"],
        "cold_step_time_ratio_vs_naive": res["exact"]["cold_seconds"] / res["naive"]["cold_seconds"],
        "exact_step_flatness": {"small_volume": [1, 4, *flat_shape], "small_peak_mb": flat["peak_mb"],
                                "full_peak_mb": res["exact"]["peak_mb"],
                                "full_over_small": res["exact"]["peak_mb"] / flat["peak_mb"]},
        "attack_steps": steps,
        "vafa_over_pgd_step_time": (steps["vafa3d"]["step_seconds"] / steps["pgd"]["step_seconds"]
                                    if steps else None),
        "vafa_over_pgd_one_step_attack_time": (steps["vafa3d"]["one_step"]["seconds"]
                                               / steps["pgd"]["one_step"]["seconds"] if steps else None),
        "attack_step_time_ratio_vs_naive": (steps["pgd"]["step_seconds"] / steps["pgd@autograd"]["step_seconds"]
                                            if steps else None),
        "attack_peak_mem_ratio_vs_naive": (steps["pgd"]["peak_mb"] / steps["pgd@autograd"]["peak_mb"]
                                           if steps else None),
    }
    out["loadavg_start"], out["loadavg_end"] = load_start, list(os.getloadavg())
    if not steps:
        out["note"] = "pgd and vafa3d are not both registered; no attack-step timing"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
