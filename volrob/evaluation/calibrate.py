"""Gaussian noise matched to a visibility level: the σ whose noise gives a chosen mean SSIM on given volumes.

Baselines must be compared at equal visibility: "VAFA lowers Dice more than noise" means something only against
noise that is as visible as the VAFA perturbation. The noise is the registered ``gaussian_noise`` attack (σ =
``eps`` in 1/255 units, projected to its threat set) with the same per-case seeds as an attack run, and SSIM is
measured as in every result row (:func:`volrob.evaluation.perturbation.perturbation_stats`), so a grid cell run
with the returned σ reproduces the matched SSIM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from volrob import attacks
from volrob.errors import ConfigError
from volrob.evaluation.perturbation import perturbation_stats


def noise_ssim(volumes: Sequence[torch.Tensor], seeds: Sequence[int], sigma: float) -> float:
    """Mean SSIM over ``volumes`` (each ``(1, C, *spatial)``) of ``gaussian_noise`` with σ = ``sigma`` / 255."""
    values = []
    for x, seed in zip(volumes, seeds, strict=True):
        atk = attacks.create("gaussian_noise", eps=sigma, seed=seed)
        values.append(perturbation_stats(x, atk.perturb(x))[0]["ssim"])
    return sum(values) / len(values)


def sigma_for_ssim(volumes: Sequence[torch.Tensor], seeds: Sequence[int], target: float, *,
                   low: float = 0.01, high: float = 255.0, tolerance: float = 1e-4, max_iter: int = 40) -> float:
    """σ (1/255 units) whose noise gives mean SSIM ``target`` on ``volumes`` within ``tolerance`` (bisection on
    log σ; SSIM falls as σ grows). ConfigError when ``target`` is outside what ``[low, high]`` can reach."""
    if not volumes or len(volumes) != len(seeds):
        raise ConfigError("noise calibration: need one seed per volume and at least one volume")
    if not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
        raise ConfigError(f"noise calibration: target SSIM must be in (0, 1), got {target!r}")
    if not 0 < low < high:
        raise ConfigError(f"noise calibration: need 0 < low < high, got low={low}, high={high}")
    s_low, s_high = noise_ssim(volumes, seeds, low), noise_ssim(volumes, seeds, high)
    if not s_high <= target <= s_low:
        raise ConfigError(f"noise calibration: target SSIM {target:.4f} is outside [{s_high:.4f}, {s_low:.4f}], "
                          f"what sigma in [{low:g}, {high:g}] reaches")
    lo, hi = math.log(low), math.log(high)
    mid = 0.5 * (lo + hi)
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        value = noise_ssim(volumes, seeds, math.exp(mid))
        if abs(value - target) <= tolerance:
            break
        if value > target:
            lo = mid
        else:
            hi = mid
    return math.exp(mid)
