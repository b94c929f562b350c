"""The configuration volrob runs, read from plans.json with nnunetv2's own plans reader (inheritance between
configurations and the older plans format are resolved there)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from volrob.errors import CheckpointError, ConfigError
from volrob.sources.nnunet.axes import AxisOrder
from volrob.sources.nnunet.folder import TrainedFolder
from volrob.sources.nnunet.requirement import require


@dataclass(frozen=True)
class PlanSettings:
    """One 3D configuration: patch size and spacing in nnU-Net's axis order, its normalisation and network."""

    configuration: str
    patch_size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    axes: AxisOrder
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    architecture: dict[str, Any]


def _three(values: Any, cast: type, what: str, where: str) -> tuple[Any, Any, Any]:
    if not isinstance(values, Sequence) or len(values) != 3:
        raise CheckpointError(f"{what} must have three entries for a 3D configuration, got {values!r}", path=where)
    try:
        out = tuple(cast(v) for v in values)
    except (TypeError, ValueError):
        raise CheckpointError(f"{what} must be numbers, got {values!r}", path=where) from None
    if min(out) <= 0:
        raise CheckpointError(f"{what} must be positive, got {values!r}", path=where)
    return out  # type: ignore[return-value]


def plan_settings(folder: TrainedFolder, configuration: str) -> PlanSettings:
    """The settings of ``configuration`` in the folder's plans; refuses 2D and cascade configurations."""
    where = str(folder.path / "plans.json")
    known = sorted(folder.plans["configurations"])
    if configuration not in known:
        raise ConfigError(f"options.configuration: {configuration!r} is not in {where} (it has {known})")
    handling = require("nnunetv2.utilities.plans_handling.plans_handler")
    try:
        manager = handling.PlansManager(folder.plans).get_configuration(configuration)
        cfg = manager.configuration
        previous = manager.previous_stage_name
    except (KeyError, TypeError, ValueError, RuntimeError, AssertionError) as err:
        raise CheckpointError(f"configuration {configuration!r} cannot be read: {err!r}"[:300], path=where) from None
    if previous is not None:
        raise ConfigError(f"options.configuration: {configuration!r} is a cascade stage (it needs the segmentation of "
                          f"{previous!r} as input); choose a stand-alone configuration such as 3d_fullres")
    patch = cfg.get("patch_size")
    if not isinstance(patch, Sequence) or len(patch) != 3:
        raise ConfigError(f"options.configuration: {configuration!r} is not 3D (patch size {patch!r}); volrob "
                          "attacks 3D configurations")
    norm, mask = cfg.get("normalization_schemes"), cfg.get("use_mask_for_norm")
    if not isinstance(norm, list) or not isinstance(mask, list) or len(norm) != len(mask):
        raise CheckpointError(f"configuration {configuration!r}: normalization_schemes and use_mask_for_norm must be "
                              "lists of one entry per channel", path=where)
    arch = cfg.get("architecture")
    if not isinstance(arch, dict):
        raise CheckpointError(f"configuration {configuration!r} has no 'architecture' entry", path=where)
    return PlanSettings(configuration, _three(patch, int, "patch_size", where),
                        _three(cfg.get("spacing"), float, "spacing", where),
                        AxisOrder.from_plans(folder.plans.get("transpose_forward", [0, 1, 2]), where),
                        tuple(str(n) for n in norm), tuple(bool(m) for m in mask), arch)
