"""How far reduced precision (``inference.amp``) moves a predictor's results from float32.

For each precision (bf16, fp16) the same predictor (the registered model at preset ``tiny``, seeded weights, ROI
16³, overlap 0.5, Gaussian blending) runs on one seeded random volume through the sliding window with the exact
gradient, and is compared with the float32 run:

- ``max_logit_diff_over_range``: the largest absolute logit difference over the float32 logits' range;
- ``grad_cosine``: cosine similarity of the input gradients of the mean sigmoid output;
- ``same_regions``: share of voxels and channels whose region decision (logit > 0) is the same;
- ``exact_vs_autograd_cosine``: within that precision, the exact windowed gradient against plain autograd.

The stated tolerances (``docs/gpu.md``) are printed beside the figures with whether each holds. Autocast runs on
CPU too, so the figures can be taken anywhere; ``--device cuda`` takes them on a GPU.

Usage: python scripts/precision_agreement.py [--shape 48 40 36] [--model unet] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

import torch

TOLERANCES = {"max_logit_diff_over_range": 0.05, "grad_cosine": 0.98, "same_regions": 0.99}
ROI = (16, 16, 16)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().flatten().cpu(), b.detach().double().flatten().cpu()
    return float(a @ b / (a.norm() * b.norm()))


def _run(net: torch.nn.Module, x: torch.Tensor, device: torch.device, **window: Any) -> tuple[torch.Tensor, ...]:
    from volrob.inference.predictor import Predictor, SlidingWindowConfig

    pred = Predictor(net, mean=[0.4] * 4, std=[0.2] * 4,
                     window=SlidingWindowConfig(roi_size=ROI, **window)).to(device).eval()
    xg = x.clone().requires_grad_(True)
    out = pred(xg)
    (g,) = torch.autograd.grad(torch.sigmoid(out).mean(), xg)
    return out.detach(), g


def measure(model: str, shape: tuple[int, int, int], device: torch.device) -> dict[str, Any]:
    """The figures of every precision against float32 (see the module docstring)."""
    from volrob.models import create

    torch.manual_seed(3)
    net = create(model, in_channels=4, out_channels=3, roi_size=ROI, preset="tiny").eval()
    x = _rand(1, 4, *shape).to(device)
    out32, g32 = _run(net, x, device)
    rows: dict[str, Any] = {}
    for amp in ("bf16", "fp16"):
        out, g = _run(net, x, device, amp=amp)
        _, g_naive = _run(net, x, device, amp=amp, gradient="autograd")
        figures = {
            "max_logit_diff_over_range": float((out - out32).abs().max() / (out32.max() - out32.min())),
            "grad_cosine": _cosine(g, g32),
            "same_regions": float(((out > 0) == (out32 > 0)).float().mean()),
            "exact_vs_autograd_cosine": _cosine(g, g_naive),
        }
        holds = {"max_logit_diff_over_range": figures["max_logit_diff_over_range"] <= TOLERANCES[
            "max_logit_diff_over_range"], "grad_cosine": figures["grad_cosine"] >= TOLERANCES["grad_cosine"],
                 "same_regions": figures["same_regions"] >= TOLERANCES["same_regions"]}
        rows[amp] = {**figures, "within_tolerance": holds}
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=[48, 40, 36], metavar=("D", "H", "W"))
    p.add_argument("--model", default="unet")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if min(args.shape) < 1:
        print(f"error: --shape must be three positive integers, got {args.shape}", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    shape = (int(args.shape[0]), int(args.shape[1]), int(args.shape[2]))
    report = {"model": args.model, "preset": "tiny", "shape": list(shape), "roi": list(ROI), "device": str(device),
              "torch": torch.__version__, "tolerances": TOLERANCES, "precisions": measure(args.model, shape, device),
              "command": shlex.join(["python", "scripts/precision_agreement.py",
                                     *(sys.argv[1:] if argv is None else argv)])}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
