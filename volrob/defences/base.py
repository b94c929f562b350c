"""What every defence is: a configured object that turns one training batch into the loss the optimiser descends.

The trainer owns data, optimiser, schedule, checkpoints and AMP; a defence only decides the loss of a batch
(:meth:`Defence.batch_loss`). Adversarial examples are crafted inside :func:`crafting`, which puts the network in
eval mode with every parameter's ``requires_grad`` off, so crafting never accumulates into the weights' ``.grad``
and never updates normalisation statistics; both are restored exactly afterwards. Inside that block a defence
calls ``ctx.craft_predictor``, never ``ctx.predictor``: under several processes the latter runs the network through
``DistributedDataParallel``, whose forward prepares the all-reduce of a backward into the weights (and may
synchronise buffers across ranks), neither of which crafting wants; the crafting predictor runs the same network
unwrapped (in one process the two are the same object).

Every random choice of a defence derives from the ``seed`` the trainer passes per step (run seed, global step
and, under several processes, the rank), so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainContext:
    """What a defence may use: the predictor (network + normalisation; call it on ROI-sized crops for the loss
    whose gradient trains the weights), the bare network it wraps, the training loss ``(logits, target) -> scalar``,
    the output mode, the device, the trainer's autocast context factory (AMP on CUDA, a no-op elsewhere), and the
    crafting predictor: the same function over the bare network, the one to call inside :func:`crafting`
    (defaults to ``predictor``, which is right whenever the network is not wrapped for several processes)."""

    predictor: nn.Module
    net: nn.Module
    loss: LossFn
    output_mode: str
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    craft_predictor: nn.Module | None = None

    def __post_init__(self) -> None:
        if self.craft_predictor is None:
            self.craft_predictor = self.predictor


@dataclass
class BatchLoss:
    """The loss to descend and named scalar parts for the training log (e.g. ``clean``, ``adversarial``)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def crafting(net: nn.Module) -> Iterator[None]:
    """Within the block ``net`` is in eval mode with all parameters frozen; mode and flags restored afterwards."""
    was_training = net.training
    flags = [(p, p.requires_grad) for p in net.parameters()]
    net.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        net.train(was_training)


class Defence(abc.ABC):
    """Base class; subclasses register with ``@register_defence`` and implement :meth:`batch_loss`."""

    name: ClassVar[str] = "defence"

    def setup(self, ctx: TrainContext) -> None:  # noqa: B027 (optional hook)
        """Called once before training (e.g. to load a teacher onto ``ctx.device`` or check the output mode)."""

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The defence's parameters, JSON-serialisable; recorded in every checkpoint it produces."""

    @abc.abstractmethod
    def batch_loss(self, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, *, seed: int) -> BatchLoss:
        """The training loss of one batch (``images`` in the [0, 1] attack space, ``targets`` as the training loss
        expects). ``ctx.net`` is in train mode on entry and must be on exit."""

    def describe(self) -> dict[str, Any]:
        """``{"name", "params"}`` as stored in checkpoints."""
        return {"name": self.name, "params": self.params()}
