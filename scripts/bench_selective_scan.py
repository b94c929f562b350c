"""Benchmark the chunked selective scan against the sequential reference on CPU; prints JSON.

Wall time is the best of ``--repeats`` runs after one warm-up, for the forward pass alone (no graph) and for
forward + backward (gradients for every input). Peak memory is the rise of the resident set size during one
call (Linux ``VmHWM`` after minus ``VmRSS`` before, the high-water mark reset through ``/proc/self/clear_refs``),
measured in a fresh interpreter per (implementation, L) after warm-up calls, with glibc set to return big buffers
to the OS on free and trimmed before each call. It counts every buffer torch allocates, including what autograd
keeps for the backward pass; where ``/proc`` or glibc is missing it is left out.

    python scripts/bench_selective_scan.py --lengths 216 512 1728 --out bench.json
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from volrob.io import atomic_write_text
from volrob.models.mamba.scan import DEFAULT_CHUNK_SIZE, selective_scan, selective_scan_ref

IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {"sequential": selective_scan_ref, "chunked": selective_scan}
MODES = ("forward", "forward_backward")
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def make_inputs(batch: int, dim: int, state: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Mamba-like float32 inputs: S4D-real A, dt bias from the standard log-uniform [1e-3, 1e-1] init."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return {
        "u": torch.randn(batch, dim, length, generator=g),
        "delta": 0.5 * torch.randn(batch, dim, length, generator=g),
        "A": -torch.arange(1, state + 1, dtype=torch.float32).repeat(dim, 1),
        "B": torch.randn(batch, state, length, generator=g),
        "C": torch.randn(batch, state, length, generator=g),
        "D": torch.ones(dim),
        "z": torch.randn(batch, dim, length, generator=g),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),
    }


def run_once(impl: str, mode: str, inputs: dict[str, torch.Tensor], chunk_size: int) -> None:
    """One forward (no graph) or one forward + backward to every input."""
    kwargs = {"chunk_size": chunk_size} if impl == "chunked" else {}
    if mode == "forward":
        with torch.no_grad():
            IMPLEMENTATIONS[impl](**inputs, delta_softplus=True, **kwargs)
        return
    leaves = {k: v.detach().requires_grad_() for k, v in inputs.items()}
    y = IMPLEMENTATIONS[impl](**leaves, delta_softplus=True, **kwargs)
    torch.autograd.grad(y, list(leaves.values()), torch.ones_like(y))


def best_time(impl: str, mode: str, inputs: dict[str, torch.Tensor], chunk_size: int, repeats: int) -> float:
    run_once(impl, mode, inputs, chunk_size)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_once(impl, mode, inputs, chunk_size)
        times.append(time.perf_counter() - start)
    return min(times)


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def memory_measurable() -> bool:
    """Whether this system has what :func:`peak_rss_rise_mib` needs (Linux ``/proc`` and glibc)."""
    return _glibc() is not None and Path("/proc/self/clear_refs").exists()


def setup_memory_measurement() -> None:
    """Make RSS follow live memory: fixed mmap threshold (big buffers go back to the OS when freed).

    Only in the measuring child: it slows allocation, so timings are taken without it.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)  # a fixed value also turns off glibc's dynamic threshold


def peak_rss_rise_mib(fn: Callable[[], None]) -> float:
    """Rise of the resident set size's high-water mark during ``fn()``, in MiB."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)  # hand freed heap pages back, so reuse cannot hide an allocation
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    base = _proc_status_kib("VmRSS")
    fn()
    return (_proc_status_kib("VmHWM") - base) / 1024


def memory_child(impl: str, args: argparse.Namespace) -> dict[str, float]:
    """In a fresh process: peak RSS rise of each mode at ``args.lengths[0]``, after warm-up calls at L=8."""
    setup_memory_measurement()
    for mode in MODES:
        run_once(impl, mode, make_inputs(args.batch, args.dim, args.state, 8, args.seed), args.chunk_size)
    inputs = make_inputs(args.batch, args.dim, args.state, args.lengths[0], args.seed)
    calls = {mode: functools.partial(run_once, impl, mode, inputs, args.chunk_size) for mode in MODES}
    return {f"{mode}_peak_mib": round(peak_rss_rise_mib(call), 1) for mode, call in calls.items()}


def memory_in_child(args: argparse.Namespace, impl: str, length: int) -> dict[str, float]:
    """Run :func:`memory_child` in a fresh interpreter so earlier runs leave nothing behind."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", impl, "--lengths", str(length)]
    for key in ("batch", "dim", "state", "chunk_size", "seed", "threads"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def agreement(inputs: dict[str, torch.Tensor], chunk_size: int) -> dict[str, float]:
    """Largest |chunked - sequential| relative to the largest |sequential|, for y and the summed-y gradients."""
    results = {}
    for impl in IMPLEMENTATIONS:
        leaves = {k: v.detach().requires_grad_() for k, v in inputs.items()}
        kwargs = {"chunk_size": chunk_size} if impl == "chunked" else {}
        y = IMPLEMENTATIONS[impl](**leaves, delta_softplus=True, **kwargs)
        results[impl] = [y.detach(), *torch.autograd.grad(y.sum(), list(leaves.values()))]
    names = ["y", *(f"grad_{k}" for k in inputs)]
    return {
        name: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
        for name, a, b in zip(names, results["chunked"], results["sequential"], strict=True)
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[216, 512, 1728])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--out", type=Path, help="also write the JSON here (atomically)")
    parser.add_argument("--memory-child", choices=list(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args)))
        return
    measure_memory = not args.no_memory and memory_measurable()
    rows = []
    for length in args.lengths:
        inputs = make_inputs(args.batch, args.dim, args.state, length, args.seed)
        row: dict[str, object] = {"L": length}
        for impl in IMPLEMENTATIONS:
            row[impl] = {
                f"{mode}_s": round(best_time(impl, mode, inputs, args.chunk_size, args.repeats), 4) for mode in MODES
            }
            if measure_memory:
                row[impl].update(memory_in_child(args, impl, length))  # type: ignore[attr-defined]
        seq, chk = row["sequential"], row["chunked"]
        row["sequential_over_chunked"] = {k: round(seq[k] / max(chk[k], 1e-9), 3) for k in chk}  # type: ignore[index]
        row["max_relative_difference"] = {k: float(f"{v:.2e}") for k, v in agreement(inputs, args.chunk_size).items()}
        rows.append(row)
    report = {
        "benchmark": "selective_scan chunked vs sequential reference (CPU, float32, delta_softplus, D, z, bias)",
        "config": {k: getattr(args, k) for k in ("batch", "dim", "state", "chunk_size", "repeats", "seed", "threads")},
        "torch": torch.__version__,
        "machine": platform.machine(),
        "results": rows,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
