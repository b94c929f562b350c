"""Differentiable rounding with a temperature, as used by frequency-domain (quantisation) attacks.

``soft_round(x, alpha) = floor(x) + (1 + s * tanh(k * (x - floor(x) - 1/2))) / 2`` with ``k = log(2/alpha - 1)``
and ``s = 1 / (1 - alpha)``, the tanh-based relaxation of AdvDrop/VAFA. ``alpha`` in ``(0, 1)`` is the temperature:
``alpha -> 0`` tends to hard rounding (step at every half-integer), larger ``alpha`` is smoother. Attacks anneal
``alpha`` from ``alpha_start`` towards 0 over their steps (:func:`annealed_alpha`).
"""

from __future__ import annotations

import math

import torch

from volrob.errors import ConfigError


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"soft rounding: alpha (temperature) must be in (0, 1), got {alpha}")


def soft_round(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Smooth approximation of ``round(x)`` at temperature ``alpha``; differentiable in ``x``.

    Equals ``x`` at half-integers and integers exactly; for every ``alpha`` the map is monotone and stays within
    half a unit of ``round(x)``.
    """
    _check_alpha(alpha)
    k = math.log(2.0 / alpha - 1.0)
    s = 1.0 / (1.0 - alpha)
    base = torch.floor(x).detach()
    frac = x - base - 0.5
    return base + 0.5 * (1.0 + s * torch.tanh(k * frac))


def annealed_alpha(step: int, steps: int, alpha_start: float, alpha_end: float = 1e-20) -> float:
    """Temperature for ``step`` of ``steps`` (0-based): linear from ``alpha_start`` towards ``alpha_end``."""
    _check_alpha(alpha_start)
    if steps < 1 or not 0 <= step < steps:
        raise ConfigError(f"soft rounding: need 0 <= step < steps, got step={step}, steps={steps}")
    return alpha_start + (alpha_end - alpha_start) * step / steps
