"""Helpers shared by ``scripts/bench_scaling.py`` and ``scripts/bench_gpu_pgd.py`` (not a script itself).

Argument parsing that fails with one line (exit code 2 in the scripts), the ``--window KEY=VALUE`` pass-through to
:class:`volrob.inference.predictor.SlidingWindowConfig` (every field it has now or gains later, through its own
validating ``from_dict``), the benchmark model and predictor, MONAI's window count, device synchronisation, peak
memory readings and the environment every benchmark records.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

MODELS = ("unet", "unetr")
"""Models the benchmarks build (registry names)."""


class BenchArgError(Exception):
    """A bad command-line argument; ``str(err)`` is one line."""


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose errors raise :class:`BenchArgError` (one line, no usage block) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise BenchArgError(message)


def parse_value(text: str) -> Any:
    """A ``--window`` value: JSON (``true``, ``4``, ``0.25``, ``[64, 64, 64]``, ``null``), a comma list of JSON
    values (``64,64,64``), else the text itself (``bf16``, ``off``, ``cpu``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [parse_value(part.strip()) for part in text.split(",")]
    return text


def parse_window_overrides(items: Sequence[str], *, reserved: Sequence[str] = ()) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` as a dict (values by :func:`parse_value`); a key in ``reserved`` (set by the benchmark
    itself) or an item without ``=`` is a :class:`BenchArgError`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BenchArgError(f"--window expects KEY=VALUE, got {item!r}")
        if key in reserved:
            raise BenchArgError(f"--window {key}: set by this benchmark for each measurement, not an option here")
        out[key] = parse_value(value.strip())
    return out


def window_config(roi: int, overrides: dict[str, Any], **fixed: Any) -> Any:
    """The benchmarks' window: ROI ``roi``³, overlap 0.5, Gaussian blending, ``sw_batch_size`` 2, then ``overrides``
    (``--window``), then ``fixed``; built by ``SlidingWindowConfig.from_dict`` (unknown keys and bad values are
    one-line ``ConfigError``s)."""
    from volrob.inference.predictor import SlidingWindowConfig

    base: dict[str, Any] = {"roi_size": [roi] * 3, "overlap": 0.5, "mode": "gaussian", "sw_batch_size": 2}
    return SlidingWindowConfig.from_dict({**base, **overrides, **fixed})


def window_dict(window: Any) -> dict[str, Any]:
    """The window configuration as plain JSON values."""
    from volrob.utils.config import to_plain

    return dict(to_plain(window))


def build_predictor(model: str, preset: str, window: Any, device: torch.device) -> Any:
    """A frozen, seeded ``model`` (4 input channels, 3 region outputs, built for the window's ROI) in a
    :class:`~volrob.inference.predictor.Predictor` with a fixed per-channel normalisation, in eval mode on
    ``device``. The tiny UNet has channels (16, 32, 64, 128), as ``scripts/bench_attack.py`` uses."""
    from volrob.inference.predictor import Predictor
    from volrob.models import create

    torch.manual_seed(0)
    extra: dict[str, Any] = {"channels": (16, 32, 64, 128)} if (model, preset) == ("unet", "tiny") else {}
    net = create(model, in_channels=4, out_channels=3, preset=preset, roi_size=tuple(window.roi_size), **extra)
    net = net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=window).eval().to(device)


def volume_and_target(shape: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random ``(1, 4, *shape)`` input in [0, 1] (every voxel non-zero: all inside the brain mask) and a
    random region target ``(1, 3, *shape)`` (about 10 % positive), both on ``device``."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 4, *shape, generator=gen)
    target = (torch.rand(1, 3, *shape, generator=gen) > 0.9).float()
    return x.to(device), target.to(device)


def window_count(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Windows of MONAI's sliding-window layout over ``shape`` (the predictor's layout; 1 when the input has the
    ROI's size, where the predictor calls the network once on the whole input)."""
    from volrob.inference.windowed_grad import sliding_plan

    cpu = torch.device("cpu")
    plan = sliding_plan(shape, roi, overlap, "constant", device=cpu, stitch_device=cpu, dtype=torch.float32)
    return len(plan.slices)


def parse_size(text: str) -> tuple[int, int, int]:
    """``"96"`` (a cube) or ``"160x192x160"`` as three positive integers; anything else a :class:`BenchArgError`."""
    parts = text.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 3
    if len(sizes) != 3 or min(sizes) < 1:
        raise BenchArgError(f"a size is one positive integer (a cube) or DxHxW, got {text!r}")
    return sizes[0], sizes[1], sizes[2]


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:N]`` as a device; CUDA that this machine lacks is a :class:`BenchArgError`."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise BenchArgError(f"--device must be cpu or cuda[:N], got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise BenchArgError(f"--device must be cpu or cuda[:N], got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchArgError(f"--device {name}: CUDA is not available on this machine")
    return device


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds ``fn()`` takes, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def step_fn(mode: str, pred: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor,
            loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
    """One measured call: ``forward`` is a graph-free pass; any other mode is one input gradient of the loss."""

    def once() -> None:
        if mode == "forward":
            with torch.no_grad():
                pred(x)
            return
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(pred(xg), target), xg)
        assert bool(torch.isfinite(grad).all())

    return once


def rss_peak_mb() -> float:
    """This process's peak resident memory so far, MB (``ru_maxrss``: kilobytes on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def faulted_mb() -> float:
    """Memory brought in by minor page faults so far (first touches of fresh pages), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt * resource.getpagesize() / 2**20


class PeakMemory:
    """Peak memory above a baseline taken at construction: ``ru_maxrss`` on CPU, ``torch.cuda.max_memory_allocated``
    (peak statistics reset at the baseline) on CUDA. ``kind`` names which."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_memory_allocated" if device.type == "cuda" else "ru_maxrss"
        if device.type == "cuda":
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.base = torch.cuda.memory_allocated(device) / 2**20
        else:
            self.base = rss_peak_mb()

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            sync(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20 - self.base
        return rss_peak_mb() - self.base


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command as run from the repository root (no machine paths): ``python scripts/<script> ARGS``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", f"scripts/{Path(script).name}", *args])


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, cores, threads and (on CUDA) the device and its precision flags."""
    out: dict[str, Any] = {"torch": torch.__version__, "cpu_count": os.cpu_count(),
                           "torch_threads": torch.get_num_threads(), "device": str(device)}
    try:
        import monai

        out["monai"] = monai.__version__
    except ImportError:  # pragma: no cover - monai is a dependency
        pass
    if device.type == "cuda":
        out.update({
            "device_name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        })
    else:
        out["device_name"] = "cpu"
    return out


def fail(message: str) -> int:
    """Print ``error: message`` (one line) to stderr; the exit code 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2
