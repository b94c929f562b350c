"""The universal-perturbation experiment: learn δ on a source model's training cases, score unseen cases on the
source and on other architectures, beside a random-sign noise control of the same L∞ budget.

Outputs in ``out_dir``: ``universal_delta.npz`` (δ, C × roi, attack space), ``universal_record.json`` (learning
record), ``universal.json`` (the experiment's parameters) and ``universal.csv`` (written last; one row per
perturbation × target × case × region × metric; the source itself is one of the targets, the white-box diagonal).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from volrob.attacks.loop import per_sample_generator
from volrob.attacks.threat import ThreatModel
from volrob.data.cases import load_case
from volrob.data.labels import canonical_to_regions
from volrob.data.manifest import labelled_cases, load_manifest
from volrob.data.preprocess import preprocess
from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import get_policy
from volrob.io import atomic_write_bytes, atomic_write_text
from volrob.robustness.attack_run import case_seed, degradation
from volrob.robustness.model_source import ModelSource
from volrob.robustness.scoring import score_on_source
from volrob.universal.learn import learn_universal
from volrob.universal.perturbation import apply_universal
from volrob.utils.runtime import resolve_device

UNIVERSAL_COLUMNS = [
    "source", "target", "perturbation", "case", "region", "metric", "clean", "adversarial", "degradation", "eps",
    "seed", "source_sha256", "target_sha256",
]
PERTURBATIONS = ("universal", "noise")


@dataclass
class UniversalResult:
    """The tidy rows, the learned δ and its record, and where they were written."""

    rows: pd.DataFrame
    delta: torch.Tensor
    record: dict[str, Any]
    out_dir: Path


def sign_noise(x: torch.Tensor, threat: ThreatModel, seed: int) -> torch.Tensor:
    """Control: ``x`` plus uniform random-sign noise ``±eps/255`` in the threat region, projected (drawn on CPU)."""
    signs = torch.randint(0, 2, tuple(x.shape), generator=per_sample_generator(seed)).to(x.dtype) * 2 - 1
    region = threat.region(x)
    return threat.project(x, x + signs.to(x.device) * threat.radius * region, region)


def _targets(source: ModelSource, paths: Mapping[str, str | Path]) -> dict[str, ModelSource]:
    out = {source.name: source}
    for name, path in paths.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"universal: target names must be non-empty strings, got {name!r}")
        if name in out:
            raise ConfigError(f"universal: target name {name!r} is taken (the source is scored as {source.name!r})")
        tgt = ModelSource.from_checkpoint(path)
        if tgt.preprocessing != source.preprocessing or tgt.modalities != source.modalities:
            raise ConfigError(f"universal: target {name!r} ({path}) does not share the source's preprocessing and "
                              "modalities")
        out[name] = tgt
    return out


def _prepared(man: Any, split: str, src: ModelSource) -> list[tuple[Any, Any, Any]]:
    """(case, loaded data, preprocessed) for every labelled case of ``split``."""
    out = []
    for case in labelled_cases(man, split, src.modalities):
        data = load_case(man, case)
        out.append((case, data, preprocess(data.image, data.label, data.affine, src.preprocessing)))
    return out


def universal_experiment(
    source_checkpoint: str | Path, target_checkpoints: Mapping[str, str | Path], manifest: str | Path, *,
    train_split: str = "train", eval_split: str = "test", eps: float = 8, epochs: int = 5, crops_per_case: int = 2,
    step: float = 1.0, seed: int = 0, out_dir: str | Path, device: str = "auto", empty_policy: str = "brats",
    force: bool = False, progress: bool = False,
) -> UniversalResult:
    """Learn δ on ``source_checkpoint`` over ``train_split``; score ``eval_split`` clean, universal and noise on the
    source and every target (all must share the source's preprocessing). See the module docstring for outputs."""
    out = Path(out_dir)
    if (out / "universal.csv").exists() and not force:
        raise ConfigError("already holds universal.csv; use --force to replace it or choose another output folder",
                          path=out)
    threat = ThreatModel(eps=eps)
    if threat.per_sample:
        raise ConfigError("universal: eps must be one number")
    policy = get_policy(empty_policy)
    src = ModelSource.from_checkpoint(source_checkpoint)
    models = _targets(src, target_checkpoints)
    man = load_manifest(manifest)
    train, evals = _prepared(man, train_split, src), _prepared(man, eval_split, src)
    dev = resolve_device(device)
    predictor = src.predictor.to(dev).eval()
    mode = predictor.output_mode
    volumes = [p.image.as_tensor().float() for _, _, p in train]
    labels = [p.label.as_tensor() for _, _, p in train]
    targets = [canonical_to_regions(lab[None])[0].float() if mode == "regions" else lab.long() for lab in labels]
    delta, record = learn_universal(predictor, volumes, targets, eps=eps, roi=predictor.window.roi_size,
                                    epochs=epochs, crops_per_case=crops_per_case, step=step, seed=seed,
                                    progress=progress)
    record = {**record, "source": src.name, "source_sha256": src.sha256, "train_split": train_split,
              "train_cases": [c.id for c, _, _ in train]}
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, delta=delta.numpy(), eps=np.float64(eps), roi=np.asarray(delta.shape[1:]))
    atomic_write_bytes(out / "universal_delta.npz", buf.getvalue())
    atomic_write_text(out / "universal_record.json", json.dumps(record, indent=2, default=str) + "\n")

    rows: list[dict[str, Any]] = []
    for case, data, p in tqdm(evals, desc="universal eval", disable=not progress, leave=False, dynamic_ncols=True):
        x = p.image.as_tensor().float()[None]
        inputs = {"clean": x, "universal": apply_universal(x, delta, threat),
                  "noise": sign_noise(x, threat, case_seed(seed, case.id))}
        gt = canonical_to_regions(data.label)
        for name, model in models.items():
            net = model.predictor.to(dev).eval()
            scores = {}
            for kind, inp in inputs.items():
                scores[kind] = score_on_source(net, inp, p, gt, data.spacing, dev, empty_policy=policy)
            for kind in PERTURBATIONS:
                for c_row, a_row in zip(scores["clean"], scores[kind], strict=True):
                    drop, _ = degradation(c_row["metric"], c_row["value"], a_row["value"])
                    rows.append({"source": src.name, "target": name, "perturbation": kind, "case": case.id,
                                 "region": c_row["region"], "metric": c_row["metric"], "clean": c_row["value"],
                                 "adversarial": a_row["value"], "degradation": drop, "eps": eps, "seed": seed,
                                 "source_sha256": src.sha256, "target_sha256": model.sha256})
    df = pd.DataFrame.from_records(rows, columns=UNIVERSAL_COLUMNS)
    params = {"source": src.name, "source_checkpoint": str(source_checkpoint), "source_sha256": src.sha256,
              "targets": {n: {"sha256": m.sha256, **m.origin} for n, m in models.items()}, "manifest": str(manifest),
              "manifest_sha256": man.digest(), "train_split": train_split, "eval_split": eval_split, "eps": eps,
              "epochs": epochs, "crops_per_case": crops_per_case, "step": step, "seed": seed,
              "noise_control": "uniform random sign +-eps/255 in the brain mask, seeded per case",
              "empty_policy": policy.name, "device": str(dev)}
    atomic_write_text(out / "universal.json", json.dumps(params, indent=2, default=str) + "\n")
    csv = io.StringIO()
    df.to_csv(csv, index=False)
    atomic_write_text(out / "universal.csv", csv.getvalue())  # last: marks completion
    return UniversalResult(df, delta, record, out)


def summarise_universal(rows: pd.DataFrame, region: str = "WT", metric: str = "dice") -> pd.DataFrame:
    """Per target: mean clean, universal and noise score of ``region`` / ``metric`` over the eval cases."""
    sel = rows[(rows.region == region) & (rows.metric == metric)]
    out = []
    for target, g in sel.groupby("target", sort=False):
        uni, noise = g[g.perturbation == "universal"], g[g.perturbation == "noise"]
        out.append({"target": target, "clean": float(uni["clean"].mean()),
                    "universal": float(uni["adversarial"].mean()), "noise": float(noise["adversarial"].mean())})
    return pd.DataFrame(out, columns=["target", "clean", "universal", "noise"])
