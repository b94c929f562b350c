"""What each rank runs in the DDP tests: processes spawned with ``torch.multiprocessing`` that join a gloo group
through :func:`volrob.distributed.setup` (as under torchrun) and leave their results in files for the test."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from volrob import defences, distributed, losses, models
from volrob.data.labels import canonical_to_regions
from volrob.distributed import DistInfo
from volrob.inference.predictor import SlidingWindowConfig
from volrob.training import ddp
from volrob.training.step import train_context, train_step

ROI = (16, 16, 16)
ORACLE_DEFENCES: dict[str, dict[str, Any]] = {
    "none": {},
    # no random start: each sample's PGD example is bitwise the same alone or in any batch (attacks run per sample)
    "pgd_at": {"eps": 4.0, "steps": 2, "random_start": False, "clean_weight": 0.5},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(fn: Callable[..., None], world_size: int, *args: Any, attempts: int = 3) -> None:
    """``fn(info, *args)`` on ``world_size`` fresh processes in one gloo process group. The group meets on a port
    that was free a moment before; when another process takes it first, a rank dies while joining, and the group
    is started again on another port (``fn`` must not depend on an earlier attempt)."""
    for attempt in range(attempts):
        try:
            mp.spawn(_entry, args=(world_size, free_port(), fn, args), nprocs=world_size, join=True)
            return
        except mp.ProcessExitedException:  # killed by a signal (a failed join), not an error raised by fn
            if attempt == attempts - 1:
                raise


def _entry(rank: int, world_size: int, port: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"})
    torch.set_num_threads(1)
    info, _ = distributed.setup("cpu")
    try:
        fn(info, *args)
    finally:
        distributed.teardown()


# -- one optimiser step -----------------------------------------------------------------------------------------
def oracle_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny UNet (fixed initial weights) and a batch of four 16^3 crops with a zero background, region targets."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = models.create("unet", in_channels=4, out_channels=3, roi_size=list(ROI), preset="tiny")
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4, 4, *ROI, generator=gen) * 0.9 + 0.05
    x[:, :, :4] = 0.0
    labels = torch.randint(0, 4, (4, 1, *ROI), generator=gen)
    labels[:, :, :4] = 0
    return net, x, canonical_to_regions(labels).float()


def one_step(net: torch.nn.Module, train_net: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
             defence_name: str) -> dict[str, dict[str, torch.Tensor]]:
    """One step of the trainer's code path (context, defence loss, backward, clipping, update) with SGD at lr 1,
    so the change of the weights is the gradient itself; returns the weights and gradients after it."""
    ctx = train_context(net, train_net, norm={"mean": [0.5] * 4, "std": [0.25] * 4},
                        window=SlidingWindowConfig(roi_size=ROI), output_mode="regions",
                        loss=losses.create("dice_bce"), device=torch.device("cpu"))
    defence = defences.create(defence_name, **ORACLE_DEFENCES[defence_name])
    defence.setup(ctx)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    train_net.train()
    train_step(defence, ctx, images, targets, seed=0, optimizer=opt, scaler=scaler, grad_clip=12.0)
    return {"weights": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "grads": {k: p.grad.detach().clone() for k, p in net.named_parameters() if p.grad is not None}}


def oracle_rank(info: DistInfo, out: str) -> None:
    """Each rank steps DDP(net) on its half of the oracle batch, once per oracle defence."""
    for name in ORACLE_DEFENCES:
        net, x, y = oracle_batch()
        half = slice(2 * info.rank, 2 * info.rank + 2)
        train_net = ddp.wrap(net, info, torch.device("cpu"), x[:1])
        result = one_step(net, train_net, x[half], y[half], name)
        torch.save(result, Path(out) / f"{name}_rank{info.rank}.pt")


# -- the trainer and the command ---------------------------------------------------------------------------------
def trainer_rank(info: DistInfo, runs: list[dict[str, Any]], record_dir: str) -> None:
    """Run the trainer for each ``{"config", "stop_after", "resume"}`` in turn, recording which cases this rank
    loaded (epoch, index) and the seed of each of its steps."""
    from volrob.training import trainer as trainer_module
    from volrob.training.config import TrainConfig
    from volrob.training.sampling import CropDataset
    from volrob.utils.config import build_dataclass

    seen: list[tuple[int, int]] = []
    seeds: list[int] = []
    get_item, step = CropDataset.__getitem__, trainer_module.train_step

    def recording_get_item(self: CropDataset, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append((self.epoch, index))
        return get_item(self, index)

    def recording_step(*args: Any, seed: int, **kwargs: Any) -> Any:
        seeds.append(seed)
        return step(*args, seed=seed, **kwargs)

    CropDataset.__getitem__ = recording_get_item  # type: ignore[method-assign]
    trainer_module.train_step = recording_step  # type: ignore[assignment]
    try:
        for i, run in enumerate(runs):
            seen.clear()
            seeds.clear()
            cfg = build_dataclass(TrainConfig, run["config"])
            trainer_module.Trainer(cfg, progress=False, dist=info).run(stop_after=run.get("stop_after"),
                                                                        resume=run.get("resume", False))
            record = {"cases": seen, "seeds": seeds}
            (Path(record_dir) / f"run{i}_rank{info.rank}.json").write_text(json.dumps(record))
    finally:
        CropDataset.__getitem__ = get_item  # type: ignore[method-assign]
        trainer_module.train_step = step


def command_rank(info: DistInfo, argv: list[str], record_dir: str, guarded: str) -> None:
    """``volrob ARGV`` in this rank (as torchrun would start it); its exit code, its stderr and whether the file
    ``guarded`` kept its bytes go to a file. The command leaves the process group when it ends, so this comes
    last."""
    from volrob.cli.main import main

    before = Path(guarded).read_bytes()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    record = {"code": code, "stderr": err.getvalue(), "guarded_unchanged": Path(guarded).read_bytes() == before}
    (Path(record_dir) / f"command_rank{info.rank}.json").write_text(json.dumps(record))


def every_rank(info: DistInfo, out: str, runs: list[dict[str, Any]], argv: list[str], guarded: str) -> None:
    """All the two-rank checks in one process group (starting processes is the slow part): the oracle steps, the
    trainer runs, then the command."""
    oracle_rank(info, out)
    trainer_rank(info, runs, out)
    command_rank(info, argv, out, guarded)
