"""volrob: adversarial robustness of 3D medical segmentation models."""

from volrob.errors import VolrobError

__all__ = ["VolrobError", "__version__"]
__version__ = "0.1.0"
