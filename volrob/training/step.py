"""One optimiser step and the context it runs in: the defence's loss of a batch, backward (gradients all-reduced
across processes when the network in ``ctx.predictor`` is wrapped in ``DistributedDataParallel``), gradient clipping
and the update.

The trainer calls these for every run and batch; the DDP oracle test calls them too, so the step it checks is the
one that trains."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from volrob.defences.base import BatchLoss, Defence, LossFn, TrainContext
from volrob.inference.predictor import Predictor, SlidingWindowConfig


def train_context(net: nn.Module, train_net: nn.Module, *, norm: dict[str, list[float]], window: SlidingWindowConfig,
                  output_mode: str, loss: LossFn, device: torch.device,
                  autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                  ) -> TrainContext:
    """The defences' view of training: the loss predictor over ``train_net`` (``net`` itself, or ``net`` wrapped in
    ``DistributedDataParallel``) and, when they differ, a crafting predictor over the bare ``net``."""

    def predictor(module: nn.Module) -> Predictor:
        return Predictor(module, mean=norm["mean"], std=norm["std"], window=window,
                         output_mode=output_mode).to(device)

    loss_predictor = predictor(train_net)
    craft = loss_predictor if train_net is net else predictor(net)
    return TrainContext(predictor=loss_predictor, net=net, loss=loss, output_mode=output_mode, device=device,
                        autocast=autocast, craft_predictor=craft)


def train_step(defence: Defence, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, *, seed: int,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, grad_clip: float) -> BatchLoss:
    """Zero the gradients, descend ``defence.batch_loss`` of the batch once (AMP loss scaling through ``scaler``,
    global gradient norm clipped to ``grad_clip``); returns the batch's loss and its logged parts."""
    optimizer.zero_grad(set_to_none=True)
    out = defence.batch_loss(ctx, images, targets, seed=seed)
    scaler.scale(out.loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(ctx.net.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return out
