"""Time the matrix DCT backend against torch-dct; prints JSON (ratio > 1: matrix is faster).

Usage: python scripts/bench_dct.py [--repeats N] [--side S]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from volrob.signal.dct import block_dct, dct_nd


def _time(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _case(make: Callable[[torch.Tensor, str], torch.Tensor], x: torch.Tensor, repeats: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for mode in ("forward", "forward_backward"):
        times = {}
        for backend in ("matrix", "torch_dct"):
            def run(backend: str = backend, mode: str = mode) -> torch.Tensor:
                xi = x.detach().requires_grad_(mode == "forward_backward")
                y = make(xi, backend)
                if mode == "forward_backward":
                    y.square().sum().backward()
                return y
            times[backend] = _time(run, repeats)
        out[f"{mode}_matrix_s"] = times["matrix"]
        out[f"{mode}_torch_dct_s"] = times["torch_dct"]
        out[f"{mode}_ratio"] = times["torch_dct"] / times["matrix"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--side", type=int, default=96)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    s = args.side
    vol = torch.rand(1, 1, s, s, s, generator=g)
    multi = torch.rand(1, 4, s, s, s, generator=g)
    result = {
        "threads": torch.get_num_threads(),
        f"whole_{s}^3": _case(lambda x, b: dct_nd(x, (2, 3, 4), backend=b), vol, args.repeats),
        f"blocks_8^3_of_4x{s}^3": _case(lambda x, b: block_dct(x, 8, backend=b), multi, args.repeats),
        f"blocks_32^3_of_4x{s}^3": _case(lambda x, b: block_dct(x, 32, backend=b), multi, args.repeats),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
