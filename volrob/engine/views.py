"""Worst-case views of every attack cell, computed from the run's own records after its units are done.

For each cell the **worst case** is the finished unit with the largest drop (clean − adversarial) of the run's
``region`` Dice on the cell's source model (ties: the first case in manifest order), read from the unit and clean
files. Its case is prepared again with the source's preprocessing; the perturbation is the stored one
(``units/<cell>/<case>.npz``, kept by transfer runs and ``outputs.perturbations``) or is crafted again exactly as
the unit crafted it (same seed, same crafting predictor). The source's clean and adversarial predictions are
recomputed, with their ``region`` Dice on the model grid beside the table's (a mismatch stays visible). Per plane
one slice is shown: the one with the most voxels whose predicted class changed, else through the reference
tumour's centre. Written per cell, by the rank that owns it (cell index modulo world size)::

    views/<cell>.npz    per plane (axial, coronal, sagittal) the arrays of volrob.report.slices.KINDS
    views/<cell>.json   case, cell, model, attack, budget, Dice (table and recomputed), slices, spacing, …, params
    views/<cell>.png    the figure (volrob.report.slices.view_figure)

Arrays are in RAS voxel order of the model grid (a permutation and flips of it, no resampling; identity under the
default ``RAS`` preprocessing), cropped to the attacked box under the ROI-crop protocol. A cell is skipped when its
view holds the same case, region and unit parameters (resume).

Cells without a view, because there is nothing to rank them by: an ensemble source (ensembles are never scored),
a transfer source that is not among the targets (no score on itself), and cells with no finished, labelled unit
(an unlabelled case has no Dice, so no degradation). Query attacks are viewed at their final (scored) input.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from volrob import distributed
from volrob.data.labels import REGIONS, canonical_to_regions, regions_to_canonical
from volrob.engine.cases import CaseSource, PreparedCase
from volrob.engine.cells import Cell, Unit
from volrob.engine.store import RunStore, canonical
from volrob.engine.work import WorkContext, _box, _craft
from volrob.errors import DataError
from volrob.evaluation.metrics import dice
from volrob.inference.segment import predict_regions
from volrob.io import atomic_write_bytes, atomic_write_text
from volrob.report.slices import (
    LABEL_KINDS,
    PLANE_AXIS,
    PLANES,
    amplification,
    array_key,
    take,
    tumour_slice,
    view_plot,
)
from volrob.utils.transfer import to_device

FOLDER = "views"


@dataclass(frozen=True)
class WorstCase:
    """A cell's chosen unit and the table's ``region`` Dice of it on the source."""

    cell: Cell
    case: str
    params: dict[str, Any]
    clean: float
    adversarial: float


def view_paths(store: RunStore, cell: str) -> dict[str, Path]:
    """The ``npz``, ``json`` and ``png`` files of one cell's view."""
    base = store.root / FOLDER / cell
    return {ext: base.with_suffix(f".{ext}") for ext in ("npz", "json", "png")}


def viewable(cell: Cell, ensembles: set[str]) -> bool:
    """Whether the cell's source is a real model scored on itself (see the module docstring)."""
    return cell.source not in ensembles and cell.source in cell.targets


def _dice(rows: Sequence[dict[str, Any]], region: str) -> float | None:
    return next((float(r["value"]) for r in rows if r["region"] == region and r["metric"] == "dice"), None)


def worst_case(store: RunStore, cell: Cell, cases: Sequence[str], region: str) -> WorstCase | None:
    """The finished, scored unit of ``cell`` with the largest ``region`` Dice drop on its source (first on ties)."""
    best: WorstCase | None = None
    for case in cases:
        unit, clean = store.read(store.unit_path(cell.id, case)), store.read(store.clean_path(cell.source, case))
        if not unit or not clean or unit.get("status") != "ok" or clean.get("status") != "ok":
            continue
        after = _dice(((unit.get("scores") or {}).get(cell.source) or {}).get("rows") or [], region)
        before = _dice(clean.get("rows") or [], region)
        if after is None or before is None:
            continue
        if best is None or before - after > best.clean - best.adversarial:
            best = WorstCase(cell, case, unit["params"], before, after)
    return best


def is_current(store: RunStore, choice: WorstCase, region: str) -> bool:
    """Whether the cell's view exists for the same case, region and unit parameters."""
    paths = view_paths(store, choice.cell.id)
    record = store.read(paths["json"])
    return (record is not None and paths["npz"].is_file() and paths["png"].is_file()
            and record.get("case") == choice.case and record.get("region") == region
            and canonical(record.get("params")) == canonical(choice.params))


def write_views(ctx: WorkContext, cases: CaseSource, cells: Sequence[Cell],
                echo: Callable[[str], None] = print) -> list[Path]:
    """This rank's views of ``cells`` (those at index ≡ rank modulo the world size), then a barrier; the JSON
    records written. Nothing when ``outputs.views`` is off. A case that cannot be prepared, or a device out of
    memory, skips that view with a warning (a rerun retries it)."""
    cfg = ctx.cfg
    if not cfg.outputs.views:
        return []
    info = distributed.env_info()
    ensembles = {m.name for m in cfg.models if m.is_ensemble}
    order = {case: i for i, case in enumerate(cases.ids)}
    choices = [worst_case(ctx.store, c, cases.ids, cfg.region) for i, c in enumerate(cells)
               if i % info.world_size == info.rank and viewable(c, ensembles)]
    todo = sorted((c for c in choices if c is not None and not is_current(ctx.store, c, cfg.region)),
                  key=lambda c: order[c.case])  # grouped by case: each case is prepared once per preprocessing
    written = []
    try:
        for choice in todo:
            try:
                written.append(save_view(ctx.store, build_view(ctx, cases, choice)))
            except (DataError, torch.OutOfMemoryError) as err:
                echo(f"warning: no view of {choice.cell.id} (case {choice.case}): {str(err).splitlines()[0]}")
    finally:
        cases.release()
    distributed.barrier()
    return written


def _perturbation(ctx: WorkContext, choice: WorstCase, prepared: PreparedCase, x: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(x_adv, delta, origin)``: the unit's adversarial input from its stored perturbation, else crafted again."""
    delta = ctx.store.load_delta(choice.cell.id, choice.case)
    if delta is not None and tuple(delta.shape) == tuple(x.shape):
        return (x + delta.to(x.device)).clamp(0.0, 1.0), delta, "stored"
    x_adv = _craft(ctx, Unit(choice.cell, choice.case), prepared, x, None)[0]
    return x_adv, (x_adv - x).float().cpu(), "crafted again"


def _to_ras(affine: np.ndarray) -> tuple[np.ndarray, list[float], str]:
    """The orientation transform of a grid with ``affine`` to RAS voxel order, the RAS voxel spacing and the
    grid's own axis codes."""
    ornt = nib.orientations.io_orientation(affine)
    sizes = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))
    spacing = [0.0] * 3
    for i, (axis, _) in enumerate(ornt):
        spacing[int(axis)] = float(sizes[i])
    return ornt, spacing, "".join(nib.orientations.aff2axcodes(affine))


def changed_slices(before: np.ndarray, after: np.ndarray, reference: np.ndarray) -> tuple[dict[str, int], str]:
    """Per plane the slice with the most voxels whose class differs between ``before`` and ``after`` (first on
    ties); when none differs, the slice through the centre of the ``reference`` tumour (the middle if none)."""
    changed = before != after
    if not changed.any():
        return {p: tumour_slice(reference, PLANE_AXIS[p]) for p in PLANES}, "reference tumour centre"
    out = {}
    for p in PLANES:
        axis = PLANE_AXIS[p]
        out[p] = int(np.argmax(changed.sum(axis=tuple(a for a in range(3) if a != axis))))
    return out, "most changed voxels"


def display_channel(modalities: Sequence[str]) -> int:
    """FLAIR when the model takes it (any case), else the first channel."""
    return next((i for i, m in enumerate(modalities) if m.lower() == "flair"), 0)


def build_view(ctx: WorkContext, cases: CaseSource, choice: WorstCase) -> dict[str, Any]:
    """The view of one worst case: its record fields and ``planes`` (see :mod:`volrob.report.slices`)."""
    cfg, cell = ctx.cfg, choice.cell
    src = ctx.pool.sources[cell.source]
    prepared = cases.prepare(choice.case, src.preprocessing)
    if prepared.label is None:
        raise DataError(f"case {choice.case} has no label")
    box = _box(ctx, prepared, src.predictor.window.roi_size)
    x = to_device(prepared.x[box], ctx.device)
    x_adv, delta, origin = _perturbation(ctx, choice, prepared, x)
    clean = predict_regions(src.predictor, x[0], ctx.device)
    adv = predict_regions(src.predictor, x_adv[0], ctx.device)
    reference = prepared.label[box][0, 0].numpy().astype(np.uint8)
    r = REGIONS.index(cfg.region)
    truth = canonical_to_regions(reference)[r]
    again = {"clean": dice(clean[r].numpy(), truth, empty_policy=cfg.empty_policy),
             "adversarial": dice(adv[r].numpy(), truth, empty_policy=cfg.empty_policy)}
    ornt, spacing, codes = _to_ras(np.asarray(prepared.pre.image.affine, dtype=np.float64))

    def ras(volume: np.ndarray) -> np.ndarray:
        return nib.orientations.apply_orientation(volume, ornt)

    volumes = {"reference": ras(reference), "clean_prediction": ras(regions_to_canonical(clean).numpy()),
               "adversarial_prediction": ras(regions_to_canonical(adv).numpy())}
    channel = display_channel(ctx.pool.modalities(cell.source))
    volumes |= {"clean": ras(x[0, channel].float().cpu().numpy()),
                "adversarial": ras(x_adv[0, channel].float().cpu().numpy()),
                "perturbation": ras(delta[0, channel].numpy())}
    slices, rule = changed_slices(volumes["clean_prediction"], volumes["adversarial_prediction"], volumes["reference"])
    planes = {p: {k: np.ascontiguousarray(take(v, p, slices[p]), dtype=np.uint8 if k in LABEL_KINDS else np.float32)
                  for k, v in volumes.items()} for p in PLANES}
    linf = float(delta.abs().max()) * 255.0 if delta.numel() else 0.0
    table = {"clean": choice.clean, "adversarial": choice.adversarial}
    return {"case": choice.case, "cell": cell.id, "model": cell.source, "attack": cell.attack,
            "budget_key": cell.budget_key, "budget": cell.budget, "region": cfg.region,
            "channel": ctx.pool.modalities(cell.source)[channel], "channel_index": channel, "slices": slices,
            "slice_rule": rule, "spacing": spacing, "axes": "RAS", "grid_orientation": codes,
            "crop": [[s.start, s.stop] for s in box[2:]] if len(box) > 2 else None,
            "amplification": amplification(linf), "linf_255": linf, "perturbation": origin,
            "dice": {"table": table, "recomputed": again, "grid": "model",
                     "match": all(abs(table[k] - again[k]) <= 1e-6 for k in table)},
            "params": choice.params, "planes": planes}


def save_view(store: RunStore, view: dict[str, Any]) -> Path:
    """Write one view's ``npz``, ``png`` and (last, marking it complete) ``json`` atomically; the JSON path."""
    paths = view_paths(store, view["cell"])
    buf = io.BytesIO()
    np.savez_compressed(buf, **{array_key(p, k): a for p, arrays in view["planes"].items() for k, a in arrays.items()})
    atomic_write_bytes(paths["npz"], buf.getvalue())
    view_plot(view, paths["png"])
    record = {k: v for k, v in view.items() if k != "planes"}
    atomic_write_text(paths["json"], json.dumps(canonical(record), indent=2) + "\n")
    return paths["json"]
