"""A bundle's ``inferer`` (MONAI's ``SlidingWindowInferer``) as volrob's sliding-window settings: ROI, windows per
batch, overlap and blending. Arguments that only move work between devices are ignored; any other argument must keep
MONAI's default, since volrob's windows are MONAI's layout with those defaults."""

from __future__ import annotations

import inspect
from typing import Any

from volrob.sources.bundle.config import SEP, BundleConfig
from volrob.sources.bundle.steps import component_name

_NO_EFFECT = {"sw_device", "device", "progress", "cache_roi_weight_map", "cpu_thresh", "buffer_steps", "buffer_dim"}
_MAPPED = {"roi_size", "sw_batch_size", "overlap", "mode"}


def map_inferer(cfg: BundleConfig, key: str = "inferer") -> dict[str, Any]:
    """The window settings (``roi_size``, ``sw_batch_size``, ``overlap``, ``mode``) of the inferer entry ``key``."""
    from monai.inferers import SlidingWindowInferer

    key, node = cfg.node(key)
    if not isinstance(node, dict) or "_target_" not in node:
        raise cfg.error(key, "expected an inferer component (a mapping with _target_)")
    name = component_name(cfg, key, node, "monai.inferers")
    if name != "SlidingWindowInferer":
        raise cfg.error(key, f"inferer {name} is not supported; volrob runs MONAI's SlidingWindowInferer (give the "
                             "bundle one, or its ROI with --roi)")
    params = inspect.signature(SlidingWindowInferer).parameters
    args = {k for k in node if not k.startswith("_")}
    unknown = sorted(args - set(params))
    if unknown:
        raise cfg.error(key, f"SlidingWindowInferer has no argument(s) {unknown}")

    def get(arg: str) -> Any:
        return cfg.value(f"{key}{SEP}{arg}") if arg in args else params[arg].default

    for arg in sorted(args - _MAPPED - _NO_EFFECT):
        value, default = get(arg), params[arg].default
        if _plain(value) != _plain(default) and not (isinstance(value, list | tuple)
                                                     and all(_plain(v) == _plain(default) for v in value)):
            raise cfg.error(f"{key}{SEP}{arg}", f"{value!r} is not supported (volrob follows MONAI's default "
                                                f"{_plain(default)!r})")
    roi = get("roi_size")
    roi = [roi] * 3 if isinstance(roi, int) and not isinstance(roi, bool) else roi
    if (not isinstance(roi, list | tuple) or len(roi) != 3
            or not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in roi)):
        raise cfg.error(f"{key}{SEP}roi_size", f"expected three positive integers, got {roi!r}")
    overlap = get("overlap")
    if isinstance(overlap, list | tuple) and overlap and all(o == overlap[0] for o in overlap):
        overlap = overlap[0]
    if isinstance(overlap, bool) or not isinstance(overlap, int | float):
        raise cfg.error(f"{key}{SEP}overlap", f"expected one number for every axis, got {overlap!r}")
    batch = get("sw_batch_size")
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise cfg.error(f"{key}{SEP}sw_batch_size", f"expected an integer, got {batch!r}")
    return {"roi_size": [int(r) for r in roi], "sw_batch_size": batch, "overlap": float(overlap),
            "mode": str(_plain(get("mode")))}


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)
