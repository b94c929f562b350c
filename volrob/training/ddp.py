"""What changes when ``volrob train`` runs as several processes under ``torchrun`` (one process: nothing).

- **Model**: wrapped in ``DistributedDataParallel`` (:func:`wrap`); ``find_unused_parameters`` is switched on only
  for networks that leave a parameter out of their forward pass (MONAI's UNETR does), found by one probe.
- **Data** (:func:`epoch_loader`): each epoch's cases are permuted from a generator seeded by the run seed and the
  epoch (torch's ``DistributedSampler``) and dealt round-robin, so each rank takes a disjoint shard of the epoch's
  cases (and their crops); when the number of cases is not a multiple of the world size, the first few cases of the
  permutation are dealt again so that every rank takes the same number of steps. ``train.batch_size`` is per
  process: one optimiser step averages the gradients of ``world_size * batch_size`` cases. One process keeps its
  loader exactly as before (same permutations, same weights for the same seed).
- **Seeds**: a case's crops are seeded by (run seed, epoch, case index), whichever rank takes it; the crafting seed
  of each step by (run seed, global step, rank) (:func:`volrob.training.trainer.step_seed`), so ranks never craft
  from the same random start and a resumed run (same world size) repeats an uninterrupted one.
- **Crafting** runs the bare network (``TrainContext.craft_predictor``), never the DDP module, whose forward
  prepares the all-reduce of a weight backward that crafting never makes (and may synchronise buffers); the loss
  forward goes through DDP, so the loss's backward all-reduces the gradients.
- **Validation** runs on rank 0 alone while the others wait (validation sets are small; one process choosing the
  best checkpoint keeps that choice identical to a one-process run's logic).
- **Rank 0 decides**: checks and reads that concern the output folder run on rank 0 and their result (or error)
  reaches every rank (:func:`on_main`); a step that runs everywhere fails everywhere when it fails anywhere
  (:func:`agree`). Either way every rank raises the same :class:`SharedError`, which rank 0 alone reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from volrob import distributed
from volrob.distributed import DistInfo
from volrob.errors import VolrobError
from volrob.training.sampling import collate_crops

T = TypeVar("T")


class SharedError(VolrobError):
    """An error every rank raises at the same point; ``report`` is true on rank 0 only, which prints it."""

    def __init__(self, message: str, exit_code: int, *, report: bool) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.report = report


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; its result on every rank, or its :class:`VolrobError` as a
    :class:`SharedError` on every rank. The result must pickle. In one process: ``fn()``, errors unchanged."""
    if not distributed.active():
        return fn()
    result: T | None = None
    failure: tuple[str, int] | None = None
    if dist.get_rank() == 0:
        try:
            result = fn()
        except VolrobError as err:
            failure = (str(err), err.exit_code)
    result, failure = distributed.broadcast((result, failure))
    if failure is not None:
        raise SharedError(*failure, report=dist.get_rank() == 0)
    return result  # type: ignore[return-value]


def agree(fn: Callable[[], T]) -> T:
    """``fn()`` on every rank; a :class:`VolrobError` on any rank becomes a :class:`SharedError` on all of them
    (rank 0's own message, else the first failing rank's, named). In one process: ``fn()``, errors unchanged."""
    if not distributed.active():
        return fn()
    result: T | None = None
    failure: tuple[str, int] | None = None
    try:
        result = fn()
    except VolrobError as err:
        failure = (str(err), err.exit_code)
    failed = [(rank, f) for rank, f in enumerate(distributed.all_gather(failure)) if f is not None]
    if not failed:
        return result  # type: ignore[return-value]
    rank, (message, code) = failed[0]
    raise SharedError(message if rank == 0 else f"rank {rank}: {message}", code, report=dist.get_rank() == 0)


def unused_parameters(net: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the trainable parameters that ``net(example)`` does not depend on (eval mode, so no normalisation
    statistics change; no ``.grad`` is touched)."""
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    was_training = net.training
    net.eval()
    try:
        out = net(example)
        grads = torch.autograd.grad(out.float().sum(), [p for _, p in named], allow_unused=True)
    finally:
        net.train(was_training)
    return [n for (n, _), g in zip(named, grads, strict=True) if g is None]


def wrap(net: nn.Module, info: DistInfo, device: torch.device, example: torch.Tensor) -> nn.Module:
    """``net`` itself in one process; else ``DistributedDataParallel(net)`` on this rank's device (which first
    makes every rank's weights rank 0's). ``example``: an input of the network's shape, for the probe."""
    if not info.distributed:
        return net
    unused = unused_parameters(net, example.to(device))
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids, output_device=device if ids else None,
                                   find_unused_parameters=bool(unused))


def cases_per_rank(n_cases: int, info: DistInfo) -> int:
    """How many cases each rank takes per epoch (all of them in one process)."""
    return math.ceil(n_cases / info.world_size)


def epoch_loader(ds: Dataset, epoch: int, *, seed: int, batch_size: int, num_workers: int,
                 info: DistInfo, pin_memory: bool = False) -> DataLoader:
    """This rank's batches of epoch ``epoch``: a shuffle seeded by (``seed``, ``epoch``), sharded across ranks under
    several processes (see the module docstring); ``pin_memory`` stages batches in page-locked memory (CUDA)."""
    gen = torch.Generator()
    gen.manual_seed(seed * 100_003 + epoch)
    if not info.distributed:
        return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen, collate_fn=collate_crops,
                          num_workers=num_workers, pin_memory=pin_memory)
    sampler = DistributedSampler(ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=seed * 100_003, drop_last=False)
    sampler.set_epoch(epoch)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, generator=gen, collate_fn=collate_crops,
                      num_workers=num_workers, pin_memory=pin_memory)


def gathered(losses: list[float], parts: dict[str, list[float]]) -> tuple[list[float], dict[str, list[float]]]:
    """The step losses and loss parts of every rank, concatenated in rank order (this rank's own in one
    process)."""
    every = distributed.all_gather((losses, parts))
    all_losses = [v for rank_losses, _ in every for v in rank_losses]
    all_parts: dict[str, list[float]] = {}
    for _, rank_parts in every:
        for key, values in rank_parts.items():
            all_parts.setdefault(key, []).extend(values)
    return all_losses, all_parts
