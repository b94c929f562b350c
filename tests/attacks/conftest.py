"""Attack fixtures: tiny real predictors on CPU (16^3 ROI), inputs with a zero background region, and cheaply
configured attacks."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch

from volrob.attacks import Attack
from volrob.attacks import create as create_attack
from volrob.attacks.registry import ATTACKS
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.models import create as create_model

ROI = (16, 16, 16)
Inputs = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _predictor(mode: str) -> Predictor:
    with torch.random.fork_rng():  # reproducible weights without touching the caller's global generator
        torch.manual_seed(0)
        net = create_model("unet", in_channels=4, out_channels=3 if mode == "regions" else 4, roi_size=ROI,
                           preset="tiny")
    return Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=SlidingWindowConfig(roi_size=ROI),
                     output_mode=mode).eval()


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here runs with one intra-op thread (see the root conftest)."""


@pytest.fixture(scope="session")
def predictors() -> dict[str, Predictor]:
    """One tiny UNet predictor per output mode (``regions``: 3 sigmoid channels, ``labels``: 4 classes)."""
    return {mode: _predictor(mode) for mode in ("regions", "labels")}


def make_inputs(batch: int = 2, mode: str = "regions", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (batch, 4, 16^3) in [0, 1] whose first three depth slices are background (all channels zero), and a
    target that follows ``mode``: float region masks (batch, 3, ...) or class maps (batch, 1, ...)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 4, *ROI, generator=gen) * 0.9 + 0.05
    x[:, :, :3] = 0.0
    x[:, :, 3:, :2, :2] = 0.0  # a second, smaller background patch inside the volume
    labels = torch.randint(0, 4, (batch, 1, *ROI), generator=gen)
    labels[:, :, :3] = 0
    if mode == "labels":
        return x, labels
    from volrob.data.labels import canonical_to_regions

    return x, canonical_to_regions(labels).float()


@pytest.fixture(scope="session")
def inputs() -> Inputs:
    """Factory ``inputs(batch=2, mode="regions", seed=0) -> (x, target)``."""
    return make_inputs


CHEAP: dict[str, Any] = {"steps": 3, "restarts": 2, "queries": 6, "block": 8, "checkpoints": [2],
                         "delta": (torch.rand(4, 8, 8, 8, generator=torch.Generator().manual_seed(5)) - 0.5) / 10}
"""Cheap options by name; ``delta`` is the learned perturbation the ``universal`` attack tiles."""


def cheap_attack(name: str, eps: float | list[float] | None = None, **extra: Any) -> Attack:
    """``create(name, ...)`` with the cheap options of :data:`CHEAP` that its signature accepts, ``eps`` where it
    takes one, and ``extra``."""
    params = inspect.signature(ATTACKS.entry(name).builder).parameters
    cfg = {k: v for k, v in CHEAP.items() if k in params}
    if eps is not None and "eps" in params:
        cfg["eps"] = eps
    return create_attack(name, **{**cfg, **extra})


@pytest.fixture(scope="session")
def cheap() -> Callable[..., Attack]:
    """Factory ``cheap(name, eps=None, **extra)``: a registered attack, cheaply set up (:func:`cheap_attack`)."""
    return cheap_attack
