"""What one unit of work does.

A **clean unit** (model, case) segments the clean input with the model's own sliding window, maps the prediction
back to the source grid and scores it against the source labels (optionally writing the predicted label map).

An **attack unit** (cell, case) crafts the perturbation once on the cell's source (white-box, seeded by the run
seed and the case id) and scores the adversarial input on every target of the cell with the target's own sliding
window, on the source grid, against the source labels — plus, when the attack keeps snapshots (a query attack),
each snapshot, and with band analysis the band-filtered perturbations. In a transfer run every target scores
``clip(x + delta, 0, 1)`` with the stored float32 perturbation ``delta``, so a target added later sees exactly what
the others saw. Under the ROI-crop protocol (white-box only) crafting and scoring use the ROI crop and scores are
on the preprocessed grid.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volrob.analysis.bands import band_energy, filter_delta, split_bands
from volrob.data.labels import REGIONS, canonical_to_regions, get_convention, regions_to_canonical
from volrob.data.readers import write_nifti
from volrob.engine.cases import PreparedCase
from volrob.engine.cells import CleanUnit, Unit
from volrob.engine.config import RunConfig
from volrob.engine.models import ModelPool
from volrob.engine.roi_crop import crop_box
from volrob.engine.scoring import score_on_source
from volrob.engine.seeds import case_seed
from volrob.engine.store import RunStore
from volrob.errors import DataError
from volrob.evaluation.metric_set import MetricSet
from volrob.evaluation.perturbation import perturbation_stats
from volrob.inference.segment import predict_regions, to_source_grid
from volrob.io import atomic_write_text
from volrob.utils.transfer import to_device

StepCallback = Callable[[int, int], None]


@dataclass
class WorkContext:
    """What every unit of one run shares."""

    cfg: RunConfig
    pool: ModelPool
    store: RunStore
    device: torch.device
    metric_set: MetricSet = field(default_factory=MetricSet)
    """The run's metrics (:func:`volrob.engine.scoring.run_metric_set`; default: dice, hd95, nsd)."""

    def scoring(self) -> dict[str, Any]:
        """The scoring parameters every unit records (a change of any of them invalidates stored units). The metric
        set is named only when it is not the original dice, hd95, nsd, so units stored before it existed stay
        valid for that set."""
        out = {"empty_policy": self.cfg.empty_policy, "nsd_tolerance_mm": self.cfg.nsd_tolerance_mm,
               "window": dict(self.cfg.window), "roi_crop": self.cfg.roi_crop}
        if not self.metric_set.legacy:
            out |= {"metrics": list(self.metric_set.metrics), "lesionwise": self.metric_set.challenge}
        return out


def clean_params(ctx: WorkContext, unit: CleanUnit, case_digest: str) -> dict[str, Any]:
    return {"kind": "clean", "model": unit.model, "model_sha256": ctx.pool.sha(unit.model), "case": unit.case,
            "case_digest": case_digest, "scoring": ctx.scoring()}


def attack_params(ctx: WorkContext, unit: Unit, case_digest: str) -> dict[str, Any]:
    spec = unit.cell.spec()
    scoring = ctx.scoring()
    if ctx.cfg.bands is not None:
        scoring["bands"] = list(ctx.cfg.bands.edges)
    return {"kind": "attack", **spec, "case": unit.case, "case_digest": case_digest, "seed": ctx.cfg.seed,
            "source_sha256": ctx.pool.sha(unit.cell.source), "transfer": ctx.cfg.transfer, "scoring": scoring}


def _box(ctx: WorkContext, prepared: PreparedCase, roi: tuple[int, ...]) -> tuple[slice, ...]:
    """Index of the scored and attacked part of ``prepared.x``: everything, or the ROI crop."""
    if ctx.cfg.roi_crop is None:
        return (slice(None),)
    if prepared.label is None:
        raise DataError(f"case {prepared.case.id} has no label: the ROI-crop protocol centres its crop on the "
                        "tumour")
    wt = canonical_to_regions(prepared.label)[0, 1]
    return (slice(None), slice(None), *crop_box(prepared.x.shape[2:], roi, ctx.cfg.roi_crop, wt))


def score(ctx: WorkContext, model: str, prepared: PreparedCase, x: torch.Tensor) -> list[dict[str, Any]]:
    """Tidy ``{region, metric, value}`` rows of input ``x`` (the ROI crop under that protocol) on ``model``: the
    run's metric set on the scoring regions of the case's label convention (TC, WT, ET under the ROI-crop protocol,
    which scores the canonical label on the preprocessed grid). An unlabelled case has no rows."""
    src = ctx.pool.sources[model]
    if not prepared.labelled:
        return []
    if ctx.cfg.roi_crop is not None:
        box = _box(ctx, prepared, src.predictor.window.roi_size)
        gt = canonical_to_regions(prepared.label)[0][box[1:]]
        pred = predict_regions(src.predictor, x[0], ctx.device)
        return ctx.metric_set.score(pred, gt, src.preprocessing.spacing, REGIONS).rows
    convention = get_convention(prepared.case.label_convention)
    gt = prepared.gt
    if not convention.canonical_regions:
        raw = prepared.data.raw_label
        gt = convention.region_masks(raw if raw is not None else convention.from_canonical(prepared.data.label))
    return score_on_source(src.predictor, x, prepared.pre, gt, prepared.data.spacing, ctx.device,
                           metric_set=ctx.metric_set, convention=convention)


def clean_unit(ctx: WorkContext, unit: CleanUnit, prepared: PreparedCase, params: dict[str, Any]) -> dict[str, Any]:
    """The payload of a clean unit: the model's clean scores (and its predicted label map on request, and always for
    an unlabelled case, whose prediction is its only result)."""
    tic = time.perf_counter()
    src = ctx.pool.sources[unit.model]
    x = prepared.x
    if ctx.cfg.roi_crop is not None:
        x = x[_box(ctx, prepared, src.predictor.window.roi_size)]
    rows = score(ctx, unit.model, prepared, to_device(x, ctx.device))
    if (ctx.cfg.outputs.predictions or not prepared.labelled) and ctx.cfg.roi_crop is None:
        write_prediction(ctx, unit.model, prepared, prepared.x, ctx.store.root / "predictions" / unit.model)
    return {"params": params, "status": "ok", "rows": rows, "seconds": round(time.perf_counter() - tic, 3),
            **label_notes(prepared)}


def label_notes(prepared: PreparedCase) -> dict[str, Any]:
    """What a unit records about its case's label when it is not an ordinary one: none, or an empty map."""
    if not prepared.labelled:
        return {"labelled": False}
    return {"label_empty": True} if prepared.label_empty else {}


def write_prediction(ctx: WorkContext, model: str, prepared: PreparedCase, x: torch.Tensor, folder: Path) -> None:
    """``model``'s label map of input ``x`` on the source grid, in the data's label convention, as
    ``folder/<case>_pred.nii.gz``."""
    src = ctx.pool.sources[model]
    regions = predict_regions(src.predictor, x[0], ctx.device)
    on_source = to_source_grid(regions.float(), prepared.pre, nearest=True) > 0.5
    labels = get_convention(prepared.case.label_convention).from_canonical(regions_to_canonical(on_source))
    write_nifti(folder / f"{prepared.case.id}_pred.nii.gz", labels.astype("int16"), prepared.data.affine)


def clean_target(ctx: WorkContext, source: str, prepared: PreparedCase, x: torch.Tensor) -> torch.Tensor:
    """The canonical label ``(1, 1, *spatial)`` an unlabelled case is attacked away from: the source's own clean
    prediction (for an ensemble, the members' majority per region)."""
    votes = torch.stack([predict_regions(ctx.pool.sources[m].predictor, x[0], ctx.device).float()
                         for m in ctx.pool.members(source)]).mean(0)
    return regions_to_canonical(votes > 0.5)[None, None]


def _craft(ctx: WorkContext, unit: Unit, prepared: PreparedCase, x: torch.Tensor,
           progress: StepCallback | None) -> tuple[torch.Tensor, dict[str, Any], dict[int, torch.Tensor], float]:
    cell = unit.cell
    predictor = ctx.pool.crafting(cell.source, cell.window)
    pseudo = None if prepared.labelled else clean_target(ctx, cell.source, prepared, x)
    target = prepared.target(predictor.output_mode, pseudo)
    if ctx.cfg.roi_crop is not None:
        target = target[_box(ctx, prepared, ctx.pool.sources[cell.source].predictor.window.roi_size)]
    atk = cell.create_attack(case_seed(ctx.cfg.seed, unit.case))
    tic = time.perf_counter()
    res = atk(predictor, x, to_device(target, ctx.device), progress=progress)
    seconds = time.perf_counter() - tic
    snapshots = dict(getattr(res, "snapshots", {}) or {})
    return res.x_adv.detach(), res.record, snapshots, seconds


def attack_unit(ctx: WorkContext, unit: Unit, prepared: PreparedCase, params: dict[str, Any],
                stored: dict[str, Any] | None, progress: StepCallback | None = None) -> dict[str, Any]:
    """The payload of an attack unit. ``stored`` is an earlier payload of the same unit with the same parameters
    that lacks some targets: its stored perturbation is reused and only the missing targets are scored (a query
    attack's snapshots are not stored, so such a unit is crafted again, with the same seed)."""
    cell, cfg = unit.cell, ctx.cfg
    x = prepared.x
    if cfg.roi_crop is not None:
        x = x[_box(ctx, prepared, ctx.pool.sources[cell.source].predictor.window.roi_size)]
    x = to_device(x, ctx.device)
    reusable = stored is not None and not stored.get("snapshot_linf_255")  # snapshots are not stored: recraft
    delta = ctx.store.load_delta(cell.id, unit.case) if reusable else None
    if delta is None:
        x_adv, record, snapshots, seconds = _craft(ctx, unit, prepared, x, progress)
        stored = {"params": params, "status": "ok", "record": record, "seconds": round(seconds, 3),
                  "perturbation": perturbation_stats(x, x_adv)[0], "scores": {},
                  "snapshot_linf_255": {str(q): float((s - x).abs().max()) * 255 for q, s in snapshots.items()}}
        delta = (x_adv - x).float().cpu()
        if cfg.transfer or cfg.outputs.perturbations:
            ctx.store.save_delta(cell.id, unit.case, delta)
    else:
        x_adv, snapshots = (x + delta.to(ctx.device)).clamp(0.0, 1.0), {}
    if cfg.outputs.volumes:
        write_volumes(ctx, unit, prepared, x_adv, stored["record"])
    stored.update(label_notes(prepared))
    scored = (x + delta.to(ctx.device)).clamp(0.0, 1.0) if cfg.transfer else x_adv
    masks = split_bands(x.shape[2:], cfg.bands.edges, device=ctx.device) if cfg.bands else {}
    energy = (dict(zip(masks, band_energy(delta.to(ctx.device).double(), masks)[0].tolist(), strict=True))
              if masks else {})
    scores = dict(stored.get("scores") or {})
    for t in cell.targets:
        if t in scores:
            continue
        entry: dict[str, Any] = {"target_sha256": ctx.pool.sha(t), "rows": score(ctx, t, prepared, scored)}
        if snapshots:  # an input the attack held at several counts (the result among them) is scored once
            seen: list[tuple[torch.Tensor, list[dict[str, Any]]]] = [(scored, entry["rows"])]
            entry["snapshots"] = {}
            for q, snap in sorted(snapshots.items()):
                rows = next((r for inp, r in seen if torch.equal(inp, snap)), None)
                if rows is None:
                    rows = score(ctx, t, prepared, snap)
                    seen.append((snap, rows))
                entry["snapshots"][str(q)] = rows
        if masks:
            entry["bands"] = {name: {"energy_fraction": energy[name], "rows": score(
                ctx, t, prepared, (x + filter_delta(delta.to(ctx.device), mask)).clamp(0.0, 1.0))}
                for name, mask in masks.items()}
        scores[t] = entry
        if not prepared.labelled and cfg.roi_crop is None:  # the adversarial prediction is the result
            write_prediction(ctx, t, prepared, scored, ctx.store.root / "predictions" / cell.id / t)
    return {**stored, "params": params, "scores": scores}


def write_volumes(ctx: WorkContext, unit: Unit, prepared: PreparedCase, x_adv: torch.Tensor,
                  record: dict[str, Any]) -> None:
    """The adversarial input as float32 NIfTI per modality on the source grid (values in the attack space)."""
    full = prepared.x.clone().to(x_adv.device)
    if ctx.cfg.roi_crop is not None:
        full[_box(ctx, prepared, ctx.pool.sources[unit.cell.source].predictor.window.roi_size)] = x_adv
    else:
        full = x_adv
    on_source = to_source_grid(full[0], prepared.pre, nearest=False).astype(np.float32)
    folder = ctx.store.root / "adversarial" / unit.cell.id / unit.case
    for c, mod in enumerate(ctx.pool.modalities(unit.cell.source)):
        write_nifti(folder / f"{unit.case}_{mod}.nii.gz", on_source[c], prepared.data.affine, dtype=np.float32)
    sidecar = {"case": unit.case, "cell": unit.cell.id,
               "values": "attack space: each channel scaled to [0, 1] by the model's preprocessing (run.json), on "
                         "the source voxel grid", "record": record}
    atomic_write_text(folder / f"{unit.case}_attack.json", json.dumps(sidecar, indent=2, default=str) + "\n")


def failed(params: dict[str, Any], reason: str) -> dict[str, Any]:
    """The payload of a unit that could not be computed: its parameters and the reason, retried on a rerun."""
    return {"params": params, "status": "failed", "reason": reason}
