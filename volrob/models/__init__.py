"""Model zoo: ``create(name, **cfg)``, ``available()``, ``register_model``.

Importing this package registers every built-in model.
"""

from volrob.models import monai_nets as _monai_nets  # noqa: F401  (registers unet, unetr, swinunetr, segresnet)
from volrob.models.mamba import segmenter as _mamba  # noqa: F401  (registers umamba)
from volrob.models.registry import MODELS, ModelInfo, available, create, model_info, register_model

__all__ = ["MODELS", "ModelInfo", "available", "create", "model_info", "register_model"]
