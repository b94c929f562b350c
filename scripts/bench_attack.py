"""Memory and time of one attack step on a BraTS-size volume: forward only, naive autograd, exact windowed gradient.

Each measurement runs in its own subprocess so its peak RSS is clean (``ru_maxrss`` minus the baseline taken after
building the model and the input). Forward, naive and exact steps run twice in their process: ``seconds`` times
the second call (steady state), ``cold_seconds`` the first; the peak covers both. Prints one JSON object, with the
load average (1, 5, 15 minutes) at the start and at the end of the run: times taken on a loaded machine are not
comparable across runs.

Attack steps: ``pgd`` and ``vafa3d`` each run as whole attacks of 1 and of 5 steps, the two attacks alternating
(pgd 1, vafa3d 1, pgd 5, vafa3d 5) so a change of load on a shared machine falls on both. The time of one step is
``(T(5) - T(1)) / 4``: what each further step costs, averaged over four, without the per-attack set-up (PGD's
random start; VAFA's DCT of the input and the reference's SSIM statistics) and the final scoring forward.
``vafa_over_pgd_step_time`` compares those; ``vafa_over_pgd_one_step_attack_time`` compares the 1-step attacks,
set-up included.

Usage: python scripts/bench_attack.py [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import torch

FULL, SMALL_FLAT = (160, 192, 160), (112, 112, 112)
QUICK, QUICK_FLAT = (64, 72, 64), (40, 40, 40)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


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


def child(mode: str, shape: tuple[int, ...], roi: int) -> dict[str, Any]:
    """One measurement: ``forward``, ``naive``, ``exact`` (one loss + input-gradient step) or a whole attack
    ``NAME:STEPS``."""
    from volrob.attacks.losses import resolve_loss

    pred, x, target = _setup(shape, roi, "autograd" if mode == "naive" else "exact")
    loss = resolve_loss("auto", "regions")
    base = _rss_mb()
    if mode in ("forward", "naive", "exact"):
        def once() -> None:
            if mode == "forward":
                with torch.no_grad():
                    pred(x)
                return
            xg = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(loss(pred(xg), target), xg)
            assert torch.isfinite(grad).all()

        start = time.perf_counter()
        once()  # the first call also pays one-time costs (kernel set-up, first touch of fresh memory)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        once()
        return {"seconds": time.perf_counter() - start, "cold_seconds": cold, "peak_mb": _rss_mb() - base}
    import volrob.attacks as attacks

    name, _, steps = mode.partition(":")
    start = time.perf_counter()
    attacks.create(name, steps=int(steps or 1)).run(pred, x, target)
    return {"seconds": time.perf_counter() - start, "peak_mb": _rss_mb() - base}


def _run_child(mode: str, shape: tuple[int, ...], roi: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--shape", *map(str, shape), "--roi", str(roi)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench child {mode} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


LONG = 5  # steps of the longer attack run


def attack_steps(names: list[str], shape: tuple[int, ...], roi: int) -> dict[str, dict[str, Any]]:
    """Whole attacks of 1 and ``LONG`` steps (own processes, the attacks alternating); ``step_seconds`` is the
    difference per extra step."""
    runs = {(name, steps): _run_child(f"{name}:{steps}", shape, roi) for steps in (1, LONG) for name in names}
    out = {}
    for name in names:
        one, long = runs[name, 1], runs[name, LONG]
        out[name] = {"one_step": one, f"{LONG}_steps": long,
                     "step_seconds": (long["seconds"] - one["seconds"]) / (LONG - 1),
                     "peak_mb": max(one["peak_mb"], long["peak_mb"])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick run on small volumes with ROI 32")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--roi", type=int, default=96, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, tuple(args.shape), args.roi)))
        return
    load_start = list(os.getloadavg())
    shape, flat_shape, roi = (QUICK, QUICK_FLAT, 32) if args.small else (FULL, SMALL_FLAT, 96)
    res = {mode: _run_child(mode, shape, roi) for mode in ("forward", "naive", "exact")}
    flat = _run_child("exact", flat_shape, roi)
    import volrob.attacks as attacks

    have = [name for name in ("pgd", "vafa3d") if name in attacks.available()]
    steps = attack_steps(have, shape, roi) if len(have) == 2 else {}
    fwd = res["forward"]
    out = {
        "volume": [1, 4, *shape], "roi": roi, "overlap": 0.5, "mode": "gaussian", "sw_batch_size": 2,
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
    }
    out["loadavg_start"], out["loadavg_end"] = load_start, list(os.getloadavg())
    if not steps:
        out["note"] = "pgd and vafa3d are not both registered; no attack-step timing"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
