"""The bundle's ``network_def`` built and its weights loaded strictly (``weights_only=True``).

Untrusted, the only classes built are those of ``monai.networks.nets`` (a bare name such as ``SegResNet`` or a dotted
path inside that package) with plain arguments, and no argument that would fetch or read other weights or files.
Trusted, MONAI's ``ConfigParser`` instantiates the entry as it would when running the bundle.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

from torch import nn

from volrob.errors import CheckpointError
from volrob.external import read_state_dict
from volrob.sources.bundle.config import SEP, BundleConfig

PACKAGE = "monai.networks.nets"
_FETCHES = re.compile(r"pretrain|url|path|file|repo|download|cache_dir|^checkpoint$|weights")
"""Argument names that load other weights or files (e.g. ``pretrained``, ``pretrained_url``, ``weights_path``)."""


def build_network(cfg: BundleConfig, key: str = "network_def") -> tuple[nn.Module, dict[str, Any]]:
    """The network of entry ``key`` (eval mode) and a record of how it was built."""
    if cfg.trusted:
        raw = cfg.raw(key)
        net = cfg.value(key)
        target = raw.get("_target_") if isinstance(raw, dict) else raw
        record: dict[str, Any] = {"target": str(target)[:200], "built_by": "monai.bundle.ConfigParser (trusted)"}
    else:
        key, node = cfg.node(key)
        if not isinstance(node, dict) or "_target_" not in node:
            raise cfg.error(key, "expected the network component (a mapping with _target_)")
        target = node["_target_"]
        cls = _safe_class(cfg, key, target)
        if "_requires_" in node:
            raise cfg.refuse(f"{key}{SEP}_requires_", "_requires_ runs other entries first")
        for flag, ok in (("_disabled_", False), ("_mode_", "default")):
            if flag in node and cfg.value(f"{key}{SEP}{flag}") != ok:
                raise cfg.error(f"{key}{SEP}{flag}", f"must be {ok!r} for the network")
        args = {k: cfg.value(f"{key}{SEP}{k}") for k in node if not (k.startswith("_") and k.endswith("_"))}
        for name, value in args.items():
            if _FETCHES.search(name) and value not in (None, False, ""):
                raise cfg.refuse(f"{key}{SEP}{name}", "an argument that loads other weights or files")
        try:
            net = cls(**args)
        except Exception as err:  # (a constructor raises whatever bad arguments make it raise)
            text = " ".join(str(err).split())[:200]
            raise cfg.error(key, f"{cls.__name__}({', '.join(args)}) failed: {type(err).__name__}: {text}") from None
        record = {"target": f"{cls.__module__}.{cls.__name__}", "arguments": args, "built_by": "volrob (untrusted)"}
    if not isinstance(net, nn.Module):
        raise cfg.error(key, f"built a {type(net).__name__}, not a torch.nn.Module")
    return net.eval(), record


def load_weights(net: nn.Module, path: Path) -> str:
    """Load the state dict at ``path`` strictly into ``net``; returns the file's sha256."""
    state, sha = read_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(" ".join(str(err).strip().splitlines()[:2]).split())[:300]
        raise CheckpointError(f"weights do not fit network_def: {detail}", path=path) from None
    return sha


def _safe_class(cfg: BundleConfig, key: str, target: Any) -> type[nn.Module]:
    where = f"{key}{SEP}_target_"
    if not isinstance(target, str) or not target:
        raise cfg.error(where, f"expected a class name, got {target!r}")
    if target.startswith(("$", "@", "%")):
        raise cfg.refuse(where, f"{target[:60]!r} is not a class name")
    module_name, _, attr = target.rpartition(".") if "." in target else (PACKAGE, "", target)
    obj = None
    if (module_name == PACKAGE or module_name.startswith(PACKAGE + ".")) and not attr.startswith("_"):
        try:
            obj = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            obj = None
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)
            and (obj.__module__ == PACKAGE or obj.__module__.startswith(PACKAGE + "."))):
        raise cfg.refuse(where, f"{target!r} is not a network class of {PACKAGE}")
    return obj
