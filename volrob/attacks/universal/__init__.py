"""Universal adversarial perturbations: one ROI-sized δ learned over training cases, tiled over whole volumes."""

from __future__ import annotations

from volrob.attacks.universal.apply import UniversalPerturbation, delta_sha256
from volrob.attacks.universal.learn import learn_universal
from volrob.attacks.universal.perturbation import apply_universal, tile_delta

__all__ = ["UniversalPerturbation", "apply_universal", "delta_sha256", "learn_universal", "tile_delta"]
