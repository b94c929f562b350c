"""The network of one configuration, built from the plans' ``architecture`` entry as nnU-Net builds it
(nnunetv2's ``get_network_from_plans``, deep supervision off), with one fold's weights loaded strictly.

The plans name classes that nnunetv2 imports by their dotted path. plans.json is data, so before anything is imported
the names are checked: the network must come from ``dynamic_network_architectures`` (nnU-Net's network library) and
the layer arguments (``conv_op``, ``norm_op``, ``dropout_op``, ``nonlin``) from ``torch.nn``.
"""

from __future__ import annotations

import pydoc
from collections.abc import Mapping
from typing import Any

from torch import nn

from volrob.errors import CheckpointError
from volrob.sources.nnunet.checkpoint import FoldCheckpoint
from volrob.sources.nnunet.requirement import require

NETWORK_PACKAGES = ("dynamic_network_architectures.",)
LAYER_PACKAGES = ("torch.nn.",)


def _check_names(arch: Mapping[str, Any], where: str) -> None:
    name = arch.get("network_class_name")
    if not isinstance(name, str) or not name.startswith(NETWORK_PACKAGES):
        raise CheckpointError(f"architecture.network_class_name must name a class of {list(NETWORK_PACKAGES)}, got "
                              f"{name!r}", path=where)
    kwargs, imports = arch.get("arch_kwargs"), arch.get("_kw_requires_import", [])
    if not isinstance(kwargs, dict) or not isinstance(imports, list):
        raise CheckpointError("architecture needs 'arch_kwargs' (a mapping) and '_kw_requires_import' (a list)",
                              path=where)
    for key in imports:
        value = kwargs.get(key)
        if value is not None and not (isinstance(value, str) and value.startswith(LAYER_PACKAGES)):
            raise CheckpointError(f"architecture.arch_kwargs.{key} must name a layer of {list(LAYER_PACKAGES)}, got "
                                  f"{value!r}", path=where)


def build_network(arch: Mapping[str, Any], in_channels: int, out_channels: int, where: str) -> nn.Module:
    """The network of ``arch`` (untrained, deep supervision off); ``where`` names plans.json in errors."""
    _check_names(arch, where)
    builder = require("nnunetv2.utilities.get_network_from_plans")
    try:
        net = builder.get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"],
                                             arch.get("_kw_requires_import", []), in_channels, out_channels,
                                             allow_init=False, deep_supervision=False)
    except (ImportError, pydoc.ErrorDuringImport, TypeError, ValueError, KeyError, AttributeError, AssertionError,
            RuntimeError) as err:
        raise CheckpointError(f"cannot build {arch['network_class_name']}: {str(err).splitlines()[0][:200]}",
                              path=where) from None
    if not isinstance(net, nn.Module):
        raise CheckpointError(f"{arch['network_class_name']} did not build a torch module", path=where)
    return net


def load_weights(net: nn.Module, ckpt: FoldCheckpoint) -> nn.Module:
    """``net`` with the fold's weights (strict: every key and shape must match), in eval mode."""
    try:
        net.load_state_dict(ckpt.weights, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:240]
        raise CheckpointError(f"weights do not fit the network the plans describe (trainer {ckpt.trainer}): {detail}",
                              path=ckpt.path) from None
    return net.eval()
