"""Universal adversarial perturbations: one ROI-sized δ learned over training cases, tiled over whole volumes."""

from __future__ import annotations

from volrob.universal.learn import learn_universal
from volrob.universal.perturbation import apply_universal, tile_delta

__all__ = ["apply_universal", "learn_universal", "tile_delta"]
