"""Learning one universal ROI-sized perturbation over training volumes by signed-gradient ascent.

Each step takes random ROI-sized crops of one training case (offsets from a generator seeded by ``seed``), adds the
piece of the tiled ``delta`` that falls on each crop (so the learned ``delta`` is phase-consistent with
:func:`~volrob.attacks.universal.perturbation.tile_delta`), runs the predictor on the crops (the ROI fast path: the
network on each crop), and moves ``delta`` by ``step/255 * sign(grad)`` of the mean loss, then projects it to the L∞
ball. The brain mask and the valid range of each crop are respected. Only input gradients are taken
(``torch.autograd.grad``); the predictor runs in eval mode and its parameters are never touched.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from volrob.attacks.loop import check_positive, check_steps, eval_mode, output_mode_of
from volrob.attacks.losses import LossFn, resolve_loss
from volrob.attacks.threat import ThreatModel
from volrob.attacks.universal.perturbation import shifted_delta
from volrob.errors import ConfigError


def _roi(roi: Sequence[int] | None, predictor: torch.nn.Module) -> tuple[int, int, int]:
    if roi is None:
        window = getattr(predictor, "window", None)
        if window is None:
            raise ConfigError("learn_universal: roi is required for a predictor without a sliding-window config")
        roi = window.roi_size
    vals = tuple(roi)
    if len(vals) != 3 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in vals):
        raise ConfigError(f"learn_universal: roi must be three positive integers, got {list(vals)}")
    return int(vals[0]), int(vals[1]), int(vals[2])


def _check_cases(volumes: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], output_mode: str) -> None:
    if len(volumes) == 0:
        raise ConfigError("learn_universal: volumes must hold at least one training volume")
    if len(volumes) != len(targets):
        raise ConfigError(f"learn_universal: {len(volumes)} volumes but {len(targets)} targets")
    channels = 3 if output_mode == "regions" else 1
    for i, (v, t) in enumerate(zip(volumes, targets, strict=True)):
        if not isinstance(v, torch.Tensor) or v.ndim != 4 or not v.is_floating_point():
            raise ConfigError(f"learn_universal: volumes[{i}] must be a float tensor (C, D, H, W)")
        if v.shape[0] != volumes[0].shape[0]:
            raise ConfigError(f"learn_universal: volumes[{i}] has {v.shape[0]} channels, volumes[0] has "
                              f"{volumes[0].shape[0]}")
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (channels, *v.shape[1:]):
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ConfigError(f"learn_universal: targets[{i}] for {output_mode!r} outputs must have shape "
                              f"{[channels, *v.shape[1:]]}, got {got}")


def _pad_to(t: torch.Tensor, roi: tuple[int, int, int]) -> torch.Tensor:
    """Zero padding at the far end of each axis shorter than the ROI (keeps the origin, so the tile phase)."""
    pad = [max(0, r - s) for s, r in zip(t.shape[1:], roi, strict=True)]
    if not any(pad):
        return t
    return F.pad(t, (0, pad[2], 0, pad[1], 0, pad[0]))


def _device(predictor: torch.nn.Module) -> torch.device:
    for tensor in (*predictor.buffers(), *predictor.parameters()):
        return tensor.device
    return torch.device("cpu")


def learn_universal(
    predictor: torch.nn.Module, volumes: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], *, eps: float,
    roi: Sequence[int] | None = None, epochs: int = 5, crops_per_case: int = 2, step: float = 1.0, seed: int = 0,
    loss: str | LossFn = "auto", progress: bool = False,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """A universal ``delta`` (C, *roi) on CPU, ``|delta| <= eps/255``, and its record.

    ``volumes``: preprocessed inputs (C, *spatial) in [0, 1]; ``targets``: per volume, the target of the
    predictor's output mode (``regions``: (3, *spatial) masks; ``labels``: (1, *spatial) classes). ``eps`` and
    ``step`` are in 1/255 units. One signed-gradient step per training case per epoch, on the mean loss over
    ``crops_per_case`` random crops of that case (case order and offsets drawn from ``numpy`` seeded by ``seed``).
    """
    mode = output_mode_of(predictor)
    threat = ThreatModel(eps=eps)
    if isinstance(threat.eps, tuple):
        raise ConfigError("learn_universal: eps must be one number")
    epochs = check_steps(epochs, minimum=1, name="epochs")
    crops_per_case = check_steps(crops_per_case, minimum=1, name="crops_per_case")
    step = check_positive("step", step)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"learn_universal: seed must be an integer, got {seed!r}")
    size = _roi(roi, predictor)
    _check_cases(volumes, targets, mode)
    loss_fn = resolve_loss(loss, mode)
    dev = _device(predictor)
    rng = np.random.default_rng(int(seed))
    radius, alpha = threat.radius, step / 255.0
    cases = [(_pad_to(v.detach(), size), _pad_to(t.detach(), size)) for v, t in zip(volumes, targets, strict=True)]
    delta = torch.zeros((volumes[0].shape[0], *size), dtype=torch.float32, device=dev)
    epoch_loss: list[float] = []
    t0 = time.perf_counter()
    with eval_mode(predictor):
        for _ in tqdm(range(epochs), desc="universal", disable=not progress, leave=False, dynamic_ncols=True):
            losses = []
            for ci in rng.permutation(len(cases)):
                vol, tgt = cases[int(ci)]
                starts = [rng.integers(0, s - r + 1, size=crops_per_case) for s, r in zip(vol.shape[1:], size,
                                                                                          strict=True)]
                var = delta.clone().requires_grad_(True)
                total = torch.zeros((), device=dev)
                for k in range(crops_per_case):
                    o = [int(s[k]) for s in starts]
                    sl = (slice(None), *(slice(a, a + r) for a, r in zip(o, size, strict=True)))
                    x = vol[sl][None].to(dev, torch.float32)
                    region = threat.region(x)
                    x_adv = (x + shifted_delta(var, o)[None] * region).clamp(threat.clip_min, threat.clip_max)
                    total = total + loss_fn(predictor(x_adv), tgt[sl][None].to(dev))
                mean = total / crops_per_case
                (grad,) = torch.autograd.grad(mean, var)
                delta = (delta + alpha * grad.sign()).clamp(-radius, radius)
                losses.append(float(mean.detach()))
            epoch_loss.append(float(np.mean(losses)))
    out = delta.detach().cpu()
    record = {
        "method": "universal_signed_gradient",
        "params": {"eps": threat.eps, "eps_units": "1/255", "roi": list(size), "epochs": epochs,
                   "crops_per_case": crops_per_case, "step": step, "loss": loss if isinstance(loss, str) else "custom",
                   "cases": len(cases), "output_mode": mode},
        "seed": int(seed),
        "epoch_loss": epoch_loss,
        "linf_255": float(out.abs().max()) * 255.0,
        "l2_255": float(out.double().norm()) * 255.0,
        "seconds": time.perf_counter() - t0,
    }
    return out, record
