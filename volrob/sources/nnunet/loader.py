"""``nnunet:FOLDER``: an nnU-Net v2 trained model folder as a volrob model source.

The pieces: the folder and its folds (:mod:`.folder`), each fold's checkpoint read without running pickled code
(:mod:`.checkpoint`), the configuration's settings (:mod:`.plans`), the network built from the plans
(:mod:`.network`), nnU-Net's normalisation (:mod:`.normalisation`), window layout (:mod:`.windows`), fold and
mirroring average (:mod:`.ensemble`), and its outputs and channels in volrob's terms (:mod:`.labels`,
:mod:`.modalities`). nnunetv2 is imported only here, when a folder is loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from volrob.data.preprocess import PreprocessConfig
from volrob.errors import CheckpointError, ConfigError
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.sources.base import ModelSource, register_source
from volrob.sources.nnunet.checkpoint import FoldCheckpoint, load_fold_checkpoint
from volrob.sources.nnunet.ensemble import FoldMirrorEnsemble
from volrob.sources.nnunet.folder import Fold, TrainedFolder, read_folder
from volrob.sources.nnunet.labels import output_channels, output_map
from volrob.sources.nnunet.modalities import model_modalities
from volrob.sources.nnunet.network import build_network, load_weights
from volrob.sources.nnunet.normalisation import NnunetNorm
from volrob.sources.nnunet.options import OPTION_KEYS, NnunetOptions, parse_options
from volrob.sources.nnunet.plans import PlanSettings, plan_settings
from volrob.sources.nnunet.requirement import require
from volrob.sources.nnunet.windows import NnunetPlanner

DEFAULT_CONFIGURATION = "3d_fullres"


def _configuration(opts: NnunetOptions, folder: TrainedFolder, ckpts: Sequence[FoldCheckpoint]) -> str:
    """The configuration the folds were trained with (their ``init_args``), which ``options.configuration`` must
    match; without a record, the option, the folder's name, or 3d_fullres."""
    recorded = {c.configuration for c in ckpts if c.configuration is not None}
    if len(recorded) > 1:
        raise CheckpointError(f"the folds were trained with different configurations {sorted(recorded)}",
                              path=folder.path)
    if recorded:
        (trained,) = recorded
        if opts.configuration is not None and opts.configuration != trained:
            raise ConfigError(f"options.configuration: {opts.configuration!r}, but the checkpoints in {folder.path} "
                              f"were trained with {trained!r}")
        return trained
    return opts.configuration or folder.configuration_from_name or DEFAULT_CONFIGURATION


def _window(settings: PlanSettings, window: Mapping[str, Any]) -> SlidingWindowConfig:
    patch = settings.axes.to_voxel(settings.patch_size)
    win = SlidingWindowConfig.from_dict({"roi_size": list(patch), "overlap": 0.5, "mode": "gaussian", **window})
    if tuple(win.roi_size) != patch:
        raise ConfigError(f"window.roi_size: an nnU-Net model only accepts its patch size {list(patch)} (voxel "
                          f"order), got {list(win.roi_size)}")
    return win


def _combined_sha(folds: Sequence[Fold], ckpts: Sequence[FoldCheckpoint]) -> str:
    if len(ckpts) == 1:
        return ckpts[0].sha256
    text = "\n".join(f"fold_{f}:{c.sha256}" for f, c in zip(folds, ckpts, strict=True))
    return hashlib.sha256(text.encode()).hexdigest()


@register_source("nnunet", options=OPTION_KEYS)
def load_nnunet(location: str, *, options: Mapping[str, Any], window: Mapping[str, Any],
                name: str | None) -> ModelSource:
    """The nnU-Net v2 trained model folder at ``location`` as a ready predictor (see docs/nnunet.md)."""
    opts = parse_options(options)
    require()
    folder = read_folder(location)
    folds = folder.select_folds(opts.folds, opts.checkpoint_name)
    ckpts = [load_fold_checkpoint(folder.checkpoint(f, opts.checkpoint_name)) for f in folds]
    settings = plan_settings(folder, _configuration(opts, folder, ckpts))
    modalities = model_modalities(folder.dataset, opts.modalities)
    if len(modalities) != len(settings.normalization_schemes):
        raise CheckpointError(f"dataset.json lists {len(modalities)} channels, the plans normalise "
                              f"{len(settings.normalization_schemes)}", path=folder.path)
    outputs = output_map(folder.dataset, opts.labels)
    where = str(folder.path / "plans.json")
    nets = [load_weights(build_network(settings.architecture, len(modalities), output_channels(folder.dataset),
                                       where), c) for c in ckpts]
    mirror_axes = ckpts[0].mirror_axes if opts.mirror else None
    norm = NnunetNorm(settings.normalization_schemes, settings.use_mask_for_norm)
    win = _window(settings, window)
    predictor = Predictor(FoldMirrorEnsemble(nets, mirror_axes, settings.axes, outputs.channel_order), window=win,
                          output_mode=outputs.mode, norm=norm,
                          planner=NnunetPlanner(settings.patch_size, settings.axes)).eval()
    spacing = settings.axes.to_voxel(settings.spacing)
    preprocessing = PreprocessConfig(orientation=None, spacing=spacing, crop_foreground=True, crop_margin=0,
                                     scaling="linear")
    origin = {
        "kind": "nnunet", "folder": str(folder.path), "configuration": settings.configuration,
        "folds": list(folds), "checkpoint_name": opts.checkpoint_name,
        "checkpoint_sha256": {f"fold_{f}": c.sha256 for f, c in zip(folds, ckpts, strict=True)},
        "trainer": ckpts[0].trainer, "network": settings.architecture.get("network_class_name"),
        "mirror_axes": None if mirror_axes is None else list(mirror_axes), "mirror": opts.mirror,
        "patch_size": list(settings.patch_size), "spacing": list(settings.spacing),
        "transpose_forward": [2 - i for i in settings.axes.voxel_axis], "roi_size_voxel_order": list(win.roi_size),
        "spacing_voxel_order": list(spacing), "step_size": 1.0 - win.overlap, "blend": win.mode,
        "normalisation": norm.record(), "outputs": outputs.record, "modalities": modalities,
        "fixed_input": True,
    }
    return ModelSource(name or f"nnunet_{folder.path.name}", predictor, preprocessing, modalities,
                       _combined_sha(folds, ckpts), origin)
