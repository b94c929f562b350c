"""Running under ``torchrun``: which process this is, its device, and the few collective calls volrob needs.

volrob never launches processes itself. ``torchrun --nproc-per-node N -m volrob ...`` starts N copies and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; :func:`setup` joins the process group
(``nccl`` when this process computes on CUDA, else ``gloo``) and picks this rank's device (``cuda:LOCAL_RANK``).
Without those variables (a plain ``volrob ...``) everything is a single process of rank 0 and no group is made.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from volrob.errors import ConfigError

DEFAULT_TIMEOUT_S = 24 * 3600
"""How long a rank waits for the others at a barrier (a rank may spend hours on its share of a study)."""


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None


def env_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment variables (0, 1, 0 when absent)."""
    info = DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise ConfigError(f"torchrun environment: RANK={info.rank} is not within WORLD_SIZE={info.world_size}")
    return info


def rank_device(name: str, info: DistInfo) -> torch.device:
    """The device of this rank: ``auto`` or ``cuda`` become ``cuda:LOCAL_RANK`` (when CUDA is available), an
    explicit ``cuda:N`` is kept for a single process and refused under several ranks (each needs its own GPU)."""
    from volrob.utils.runtime import resolve_device

    dev = resolve_device(name)
    if dev.type != "cuda":
        return dev
    if info.distributed and dev.index is not None:
        raise ConfigError(f"device: {name!r} pins every rank to one GPU; use auto or cuda (each rank takes "
                          "cuda:LOCAL_RANK)")
    if dev.index is None:
        index = info.local_rank if info.distributed else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: LOCAL_RANK {info.local_rank} has no GPU (this node has "
                              f"{torch.cuda.device_count()}); start at most that many processes per node")
        dev = torch.device("cuda", index)
    torch.cuda.set_device(dev)
    return dev


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group when there is one; returns this rank's place and device."""
    info = env_info()
    dev = rank_device(device, info)
    if info.distributed and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=_env_int("VOLROB_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        dist.init_process_group(backend=backend, timeout=timeout)
    return info, dev


def active() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if active():
        dist.barrier()


def all_gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def teardown() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
