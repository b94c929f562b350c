"""Device choice, scoped seeding and environment provenance."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from typing import Any

import torch

from volrob.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable CUDA device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available on this machine")
    return dev


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (e.g. weight initialisation) under ``seed`` without touching the caller's global RNG state."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def environment() -> dict[str, Any]:
    """Versions and hardware recorded beside every result."""
    import monai

    from volrob import __version__
    from volrob.utils.host_memory import host_memory_policy

    return {
        "volrob": __version__,
        "torch": str(torch.__version__),  # TorchVersion is a str subclass that weights_only loading refuses
        "monai": str(monai.__version__),
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "host_memory": host_memory_policy(),
        "torch_threads": torch.get_num_threads(),  # float32 reductions (SSIM, PSNR) depend on it in the last bits
    }
