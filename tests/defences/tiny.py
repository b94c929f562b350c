"""Defence test helpers: tiny CPU predictors (one network with BatchNorm3d, one without) on 16^3 crops, a training
context around them, a batch with a zero background, and a check that crafting leaves the network as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from volrob import losses, models
from volrob.checkpoint import Checkpoint, save_checkpoint
from volrob.data.preprocess import PreprocessConfig
from volrob.defences.base import TrainContext
from volrob.inference.predictor import Predictor, SlidingWindowConfig

ROI = (16, 16, 16)
MODES = ("regions", "labels")
CHANNELS = {"regions": 3, "labels": 4}


def tiny_net(mode: str, *, batchnorm: bool = True) -> nn.Module:
    """Conv3d -> (BatchNorm3d) -> ReLU -> 1x1 Conv3d with fixed seeded weights."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layers: list[nn.Module] = [nn.Conv3d(4, 4, 3, padding=1)]
        if batchnorm:
            layers.append(nn.BatchNorm3d(4))
        layers += [nn.ReLU(), nn.Conv3d(4, CHANNELS[mode], 1)]
        return nn.Sequential(*layers)


def make_ctx(mode: str = "regions", *, batchnorm: bool = True) -> TrainContext:
    """A training context in train mode around a fresh tiny network."""
    net = tiny_net(mode, batchnorm=batchnorm)
    predictor = Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=SlidingWindowConfig(roi_size=ROI),
                          output_mode=mode).train()
    return TrainContext(predictor=predictor, net=net, loss=losses.create(losses.default_for(mode)), output_mode=mode,
                        device=torch.device("cpu"))


def make_batch(mode: str = "regions", batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops (batch, 4, 16^3) in [0, 1] with zero background slices, and targets for ``mode``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 4, *ROI, generator=gen) * 0.9 + 0.05
    x[:, :, :3] = 0.0
    labels = torch.randint(0, 4, (batch, 1, *ROI), generator=gen)
    labels[:, :, :3] = 0
    if mode == "labels":
        return x, labels
    from volrob.data.labels import canonical_to_regions

    return x, canonical_to_regions(labels).float()



def assert_crafting_isolated(craft: Callable[[TrainContext], Any], ctx: TrainContext) -> None:
    """``craft(ctx)`` runs the network only in eval mode with frozen parameters, leaves every ``.grad`` (None or a
    set value) and the BatchNorm statistics as they were, and restores the train mode and requires_grad flags."""
    params = list(ctx.net.parameters())
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, float(i + 1)) if i % 2 == 0 else None
    params[-1].requires_grad_(False)  # a frozen parameter must stay frozen
    flags = [p.requires_grad for p in params]
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    buffers = {k: v.clone() for k, v in ctx.net.named_buffers()}
    seen: list[tuple[bool, bool]] = []
    hook = ctx.net.register_forward_pre_hook(
        lambda m, _: seen.append((m.training, any(p.requires_grad for p in m.parameters()))))
    try:
        craft(ctx)
    finally:
        hook.remove()
    assert seen, "the network was never run while crafting"
    assert all(not training and not grad_on for training, grad_on in seen)
    assert ctx.net.training and ctx.predictor.training
    assert [p.requires_grad for p in params] == flags
    for p, g in zip(params, grads, strict=True):
        if g is None:
            assert p.grad is None
        else:
            assert torch.equal(p.grad, g)
    for k, v in ctx.net.named_buffers():
        assert torch.equal(v, buffers[k]), k


def assert_gradients_flow(loss: torch.Tensor, ctx: TrainContext) -> None:
    """Backward from ``loss`` gives every parameter a finite gradient, not all zero."""
    ctx.net.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in ctx.net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads if g is not None)


def save_teacher(path: Path, mode: str = "regions", temperature: float = 4.0, name: str = "distill_teacher") -> Path:
    """A tiny UNet checkpoint recording the defence it was trained with (weights seeded, untrained)."""
    cfg = {"in_channels": 4, "out_channels": 3 if mode == "regions" else 4, "roi_size": list(ROI), "preset": "tiny"}
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = models.create("unet", **cfg)
    ckpt = Checkpoint(model_name="unet", model_config=cfg, state_dict=net.state_dict(),
                      preprocessing=PreprocessConfig(), normalisation={"mean": [0.4] * 4, "std": [0.3] * 4},
                      label_convention="brats2021", output_mode=mode, modalities=["t1", "t1ce", "t2", "flair"],
                      inference=SlidingWindowConfig(roi_size=ROI),
                      provenance={"defence": {"name": name, "params": {"temperature": temperature}}})
    return save_checkpoint(ckpt, path)
