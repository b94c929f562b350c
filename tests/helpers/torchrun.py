"""Starting ``torchrun ... -m volrob`` from a test: CPU, gloo, one thread per rank, no inherited rank variables."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                  "GROUP_RANK", "TORCHELASTIC_RUN_ID")


def environment() -> dict[str, str]:
    """This process's environment without torchrun's variables, with one intra-op thread per rank."""
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    return env


def command(args: Sequence[str], nproc: int = 2) -> list[str]:
    """``torchrun --standalone --nproc-per-node nproc -m volrob *args``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m",
            "volrob", *args]


def torchrun(*args: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``volrob *args`` under torchrun with ``nproc`` CPU processes and wait for it."""
    return subprocess.run(command(args, nproc), capture_output=True, text=True, env=environment(), timeout=timeout)


def start(*args: str, nproc: int = 2) -> subprocess.Popen[str]:
    """Start ``volrob *args`` under torchrun without waiting."""
    return subprocess.Popen(command(args, nproc), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment())
