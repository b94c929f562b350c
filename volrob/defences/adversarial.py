"""Adversarial training on examples crafted by one of volrob's attacks: the shared machinery of ``pgd_at``,
``fgsm_rs`` and ``vaft``.

Per batch: the attack (built fresh with the step seed) crafts ``x_adv`` inside :func:`crafting` (eval mode,
parameters frozen: no ``.grad`` accumulation, no normalisation-statistics update), then the network, back in train
mode, gives ``loss = clean_weight * L(x) + (1 - clean_weight) * L(x_adv)`` with ``L`` the training loss.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from volrob.attacks.base import Attack
from volrob.defences.base import BatchLoss, Defence, TrainContext, crafting
from volrob.defences.options import mixed, unit_interval


class AttackTraining(Defence):
    """Base of defences that train on an attack's examples; subclasses build the attack (:meth:`attack`)."""

    def __init__(self, *, clean_weight: float = 0.0) -> None:
        self.clean_weight = unit_interval(self.name, "clean_weight", clean_weight)

    @abc.abstractmethod
    def attack(self, ctx: TrainContext, seed: int) -> Attack:
        """The attack that crafts this step's examples (seeded with the step seed)."""

    def craft(self, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, seed: int) -> torch.Tensor:
        """``x_adv`` for the batch, crafted with the network frozen in eval mode (detached)."""
        attack = self.attack(ctx, seed)
        with crafting(ctx.net), ctx.autocast():
            x_adv = attack(ctx.craft_predictor, images, targets).x_adv
        return x_adv.detach()

    def batch_loss(self, ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, *, seed: int) -> BatchLoss:
        x_adv = self.craft(ctx, images, targets, seed)
        with ctx.autocast():
            adv = ctx.loss(ctx.predictor(x_adv), targets)
            clean = ctx.loss(ctx.predictor(images), targets) if self.clean_weight > 0 else None
        loss = mixed(self.clean_weight, clean, adv)
        parts = {"adversarial": float(adv.detach())}
        if clean is not None:
            parts["clean"] = float(clean.detach())
        return BatchLoss(loss, parts)

    def params(self) -> dict[str, Any]:
        return {"clean_weight": self.clean_weight}
