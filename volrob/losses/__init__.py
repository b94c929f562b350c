"""Segmentation losses: ``create(name, **cfg)``, ``available()``; ``default_for(mode)`` picks the default."""

from volrob.losses import segmentation as _segmentation  # noqa: F401  (registers the built-in losses)
from volrob.losses.registry import LOSSES, available, create, default_for

__all__ = ["LOSSES", "available", "create", "default_for"]
