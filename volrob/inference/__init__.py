"""Inference: the differentiable predictor (normalisation + sliding window) and mapping back to source space."""

from volrob.inference.predictor import Predictor, SlidingWindowConfig

__all__ = ["Predictor", "SlidingWindowConfig"]
