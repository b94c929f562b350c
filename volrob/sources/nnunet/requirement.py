"""nnunetv2 is an optional dependency: imported only when an nnU-Net folder is loaded."""

from __future__ import annotations

import importlib
from types import ModuleType

from volrob.errors import ConfigError

INSTALL_HINT = "nnunet models need the extra: pip install -e '.[nnunet]'"


def require(module: str = "nnunetv2") -> ModuleType:
    """``module`` (nnunetv2 or one of its parts), or a one-line ConfigError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"{INSTALL_HINT} ({err})") from None
