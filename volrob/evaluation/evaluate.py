"""``volrob evaluate``: sliding-window inference on a manifest split, per-case metrics, predicted label maps."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from volrob.checkpoint import load_checkpoint
from volrob.data.cases import load_case
from volrob.data.labels import canonical_to_regions, get_convention, regions_to_canonical
from volrob.data.manifest import labelled_cases, load_manifest
from volrob.data.readers import write_nifti
from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import get_policy
from volrob.evaluation.metrics import case_metrics
from volrob.evaluation.summary import summarize
from volrob.inference.predictor import SlidingWindowConfig
from volrob.inference.segment import segment_case
from volrob.io import atomic_write_text
from volrob.utils.runtime import environment, resolve_device

RESULT_COLUMNS = ["case", "split", "model", "checkpoint_sha256", "attack", "region", "metric", "value"]


@dataclass
class EvaluationResult:
    """Tidy per-case rows, their summary, and where they were written."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    out_dir: Path


def evaluate(
    checkpoint: str | Path, manifest: str | Path, out_dir: str | Path, *, split: str = "test",
    window: dict[str, Any] | None = None, device: str = "auto", empty_policy: str = "brats",
    nsd_tolerance_mm: float = 1.0, save_predictions: bool = True, force: bool = False, progress: bool = True,
) -> EvaluationResult:
    """Evaluate ``checkpoint`` on ``split`` of ``manifest``; writes metrics.csv, summary.csv, run.json, predictions.

    ``window`` overrides keys of the checkpoint's sliding-window settings (roi_size, overlap, mode, sw_batch_size,
    stitch_device).
    """
    out = Path(out_dir)
    if (out / "metrics.csv").exists() and not force:
        raise ConfigError("already holds metrics.csv; use --force to replace it or choose another output folder",
                          path=out)
    policy = get_policy(empty_policy)
    if nsd_tolerance_mm <= 0:
        raise ConfigError(f"nsd tolerance must be > 0 mm, got {nsd_tolerance_mm}")
    ckpt = load_checkpoint(checkpoint)
    man = load_manifest(manifest)
    cases = labelled_cases(man, split, ckpt.modalities)
    win = SlidingWindowConfig.from_dict({**ckpt.inference.to_dict(), **(window or {})})
    dev = resolve_device(device)
    predictor = ckpt.build_predictor(win).to(dev)
    if predictor_fixed_input(ckpt.model_name) and tuple(win.roi_size) != tuple(ckpt.inference.roi_size):
        raise ConfigError(f"model {ckpt.model_name} only accepts its training ROI {list(ckpt.inference.roi_size)}; "
                          f"got roi_size {list(win.roi_size)}")

    rows: list[dict[str, Any]] = []
    tic = time.perf_counter()
    for case in tqdm(cases, desc="evaluate", disable=not progress, leave=False, dynamic_ncols=True):
        data = load_case(man, case)
        pred = segment_case(predictor, data, ckpt.preprocessing, dev)
        gt = canonical_to_regions(data.label)
        for r in case_metrics(pred, gt, data.spacing, nsd_tolerance_mm=nsd_tolerance_mm, empty_policy=policy):
            rows.append({"case": case.id, "split": case.split, "model": ckpt.model_name,
                         "checkpoint_sha256": ckpt.sha256, "attack": "none", **r})
        if save_predictions:
            labels = get_convention(case.label_convention).from_canonical(regions_to_canonical(pred))
            write_nifti(out / "predictions" / f"{case.id}_pred.nii.gz", labels.astype("int16"), data.affine)
    df = pd.DataFrame.from_records(rows, columns=RESULT_COLUMNS)
    summary = summarize(df, by=("region", "metric"))
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "checkpoint": str(checkpoint), "checkpoint_sha256": ckpt.sha256, "model": ckpt.model_name,
        "model_config": ckpt.model_config, "manifest": str(manifest), "manifest_sha256": man.digest(),
        "split": split, "cases": [c.id for c in cases], "window": win.to_dict(), "empty_policy": policy.name,
        "nsd_tolerance_mm": nsd_tolerance_mm, "device": str(dev), "seconds": round(time.perf_counter() - tic, 2),
        "environment": environment(), "training_provenance": ckpt.provenance,
    }
    for name, frame in (("summary.csv", summary), ("metrics.csv", df)):
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        atomic_write_text(out / name, buf.getvalue())
    atomic_write_text(out / "run.json", json.dumps(record, indent=2, default=str) + "\n")
    return EvaluationResult(df, summary, out)


def predictor_fixed_input(model_name: str) -> bool:
    """Whether the registered model accepts only inputs of its training ROI."""
    from volrob.models import model_info

    return model_info(model_name).fixed_input
