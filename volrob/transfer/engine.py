"""Run a transfer experiment: craft each perturbation once, score it on every target, resume after interruption.

For every case of the split the volume is loaded and preprocessed once (all models share the attack space). For
each source and attack cell the perturbation is crafted **once** (white-box on the source, seeded by the run seed
and the case id) and stored; it is then added to the clean input and scored on **every** target with the target's
own sliding window, on the source grid, against the source labels. The diagonal (source == target) is the
white-box reference. Optional DCT band analysis scores the band-filtered perturbation on every target too.
Every unit (crafted perturbation, target scores, clean scores) is an atomic file (:mod:`volrob.transfer.store`):
rerunning a killed run recomputes only what is missing, and the tables are rebuilt from the unit files, so they
never hold duplicate rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from volrob import attacks
from volrob.analysis.bands import band_energy, filter_delta, split_bands
from volrob.data.cases import load_case
from volrob.data.labels import canonical_to_regions
from volrob.data.manifest import labelled_cases, load_manifest
from volrob.data.preprocess import Preprocessed, preprocess
from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import get_policy
from volrob.inference.ensemble import EnsemblePredictor
from volrob.io import atomic_write_text
from volrob.robustness.attack_run import case_seed, degradation
from volrob.robustness.model_source import ModelSource
from volrob.robustness.perturbation import perturbation_stats
from volrob.robustness.scoring import score_on_source
from volrob.transfer.config import TransferCell, TransferConfig, transfer_cells
from volrob.transfer.store import TransferStore
from volrob.utils.config import to_plain
from volrob.utils.runtime import environment, resolve_device

TRANSFER_COLUMNS = [
    "source", "target", "white_box", "attack", "cell", "budget_key", "budget", "params", "case", "region", "metric",
    "clean", "adversarial", "degradation", "rel_degradation", "linf_255", "l2_255", "ssim", "seed",
    "source_sha256", "target_sha256",
]
BAND_COLUMNS = ["source", "target", "white_box", "attack", "cell", "budget_key", "budget", "case", "band",
                "energy_fraction", "region", "metric", "clean", "adversarial", "degradation"]


@dataclass
class TransferResult:
    """The tidy table, the band table (may be empty), what was crafted now, and the output folder."""

    rows: pd.DataFrame
    bands: pd.DataFrame
    crafted: list[tuple[str, str, str]]
    out_dir: Path


class _Models:
    """Checkpoint models loaded once, ensemble surrogates, and crafting predictors per window override."""

    def __init__(self, cfg: TransferConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.sources: dict[str, ModelSource] = {}
        for m in cfg.models:
            if m.checkpoint is not None:
                self.sources[m.name] = ModelSource.from_checkpoint(m.checkpoint, cfg.window)
                self.sources[m.name].predictor.to(device).eval()
        first_name, first = next(iter(self.sources.items()))
        for name, src in self.sources.items():
            if src.preprocessing.to_dict() != first.preprocessing.to_dict():
                raise ConfigError(f"models: {name} preprocesses differently from {first_name}; a transfer "
                                  "experiment needs one shared attack space")
            if src.modalities != first.modalities:
                raise ConfigError(f"models: {name} takes modalities {src.modalities}, {first_name} takes "
                                  f"{first.modalities}")
        self.preprocessing, self.modalities = first.preprocessing, first.modalities
        self._crafting: dict[tuple[str, str], torch.nn.Module] = {}

    def sha(self, name: str) -> str:
        m = self.cfg.model(name)
        members = m.members or [name]
        return "+".join(str(self.sources[n].sha256) for n in members)

    def crafting(self, name: str, window: dict[str, Any]) -> torch.nn.Module:
        """The predictor that crafts for source ``name`` with ``window`` overrides (an ensemble for ensembles)."""
        key = (name, json.dumps(window, sort_keys=True))
        if key not in self._crafting:
            m = self.cfg.model(name)
            members = []
            for n in m.members or [name]:
                if window == self.cfg.window:
                    members.append(self.sources[n].predictor)
                else:
                    src = ModelSource.from_checkpoint(str(self.cfg.model(n).checkpoint), window)
                    members.append(src.predictor.to(self.device).eval())
            self._crafting[key] = members[0] if m.members is None else EnsemblePredictor(members).eval()
        return self._crafting[key]


def _score(predictor: torch.nn.Module, x: torch.Tensor, p: Preprocessed, gt: torch.Tensor, spacing: Any,
           cfg: TransferConfig, device: torch.device) -> list[dict[str, Any]]:
    return score_on_source(predictor, x, p, gt, spacing, device, nsd_tolerance_mm=cfg.nsd_tolerance_mm,
                           empty_policy=get_policy(cfg.empty_policy))


def run_transfer(cfg: TransferConfig, out_dir: str | Path, *, progress: bool = True,
                 on_crafted: Callable[[str, str, str], None] | None = None) -> TransferResult:
    """Run every missing unit of ``cfg`` into ``out_dir`` and rebuild ``transfer.csv`` (and ``bands.csv``).

    ``on_crafted(source, cell, case)`` is called after each perturbation is stored (instrumentation hook).
    """
    out = Path(out_dir)
    store = TransferStore(out)
    device = resolve_device(cfg.device)
    models = _Models(cfg, device)
    man = load_manifest(cfg.manifest)
    cases = labelled_cases(man, cfg.split, models.modalities)[:cfg.max_cases]
    cells = transfer_cells(cfg)
    crafted: list[tuple[str, str, str]] = []
    for case in tqdm(cases, desc="transfer", unit="case", disable=not progress, dynamic_ncols=True):
        todo = [c for c in cells if any(
            store.read_rows(store.scores_path(c.source, c.id, t, case.id)) is None for t in cfg.target_names)]
        clean_todo = [t for t in cfg.target_names if store.read_rows(store.clean_path(t, case.id)) is None]
        if not todo and not clean_todo:
            continue
        data = load_case(man, case)
        p = preprocess(data.image, data.label, data.affine, models.preprocessing)
        x = p.image.as_tensor()[None].float().to(device)
        lab = p.label.as_tensor()[None]  # type: ignore[union-attr]
        gt = canonical_to_regions(data.label)
        for t in clean_todo:
            store.write_rows(store.clean_path(t, case.id),
                             _score(models.sources[t].predictor, x, p, gt, data.spacing, cfg, device))
        masks = split_bands(x.shape[2:], cfg.bands.edges, device=device) if cfg.bands else {}
        for c in todo:
            unit = store.load_delta(c.source, c.id, case.id)
            if unit is None:
                predictor = models.crafting(c.source, c.window)
                target = canonical_to_regions(lab).float() if predictor.output_mode == "regions" else lab.long()
                atk = attacks.create(c.attack, **c.options, seed=case_seed(cfg.seed, case.id))
                tic = time.perf_counter()
                res = atk(predictor, x, target.to(device))
                record = {"record": res.record, "seconds": time.perf_counter() - tic,
                          **perturbation_stats(x, res.x_adv)[0]}
                store.save_delta(c.source, c.id, case.id, (res.x_adv - x)[0], record)
                crafted.append((c.source, c.id, case.id))
                if on_crafted is not None:
                    on_crafted(c.source, c.id, case.id)
                unit = store.load_delta(c.source, c.id, case.id)
                assert unit is not None
            delta = unit[0][None].to(device)
            x_adv = (x + delta).clamp(0.0, 1.0)
            energy = dict(zip(masks, band_energy(delta.double(), masks)[0].tolist(), strict=True)) if masks else {}
            for t in cfg.target_names:
                path = store.scores_path(c.source, c.id, t, case.id)
                if store.read_rows(path) is not None:
                    continue
                pred = models.sources[t].predictor
                rows = [dict(r, band="all") for r in _score(pred, x_adv, p, gt, data.spacing, cfg, device)]
                for name, mask in masks.items():
                    x_band = (x + filter_delta(delta, mask)).clamp(0.0, 1.0)
                    rows += [dict(r, band=name, energy_fraction=energy[name])
                             for r in _score(pred, x_band, p, gt, data.spacing, cfg, device)]
                store.write_rows(path, rows)
    return _assemble(cfg, store, cells, cases, models, crafted)


def _assemble(cfg: TransferConfig, store: TransferStore, cells: list[TransferCell], cases: list[Any],
              models: _Models, crafted: list[tuple[str, str, str]]) -> TransferResult:
    rows, band_rows = [], []
    for c in cells:
        for case in cases:
            unit = store.load_delta(c.source, c.id, case.id)
            if unit is None:
                raise ConfigError(f"transfer: unit {c.id}/{case.id} is missing after the run")
            record = unit[1]
            params = json.dumps(record["record"].get("params", {}), sort_keys=True, default=str)
            seed = record["record"].get("seed")
            for t in cfg.target_names:
                clean = {(r["region"], r["metric"]): r["value"] for r in store.read_rows(
                    store.clean_path(t, case.id)) or []}
                common = {"source": c.source, "target": t, "white_box": c.source == t, "attack": c.attack,
                          "cell": c.id, "budget_key": c.budget_key, "budget": c.budget, "case": case.id}
                for r in store.read_rows(store.scores_path(c.source, c.id, t, case.id)) or []:
                    before = clean[(r["region"], r["metric"])]
                    drop, rel = degradation(r["metric"], before, r["value"])
                    if r["band"] == "all":
                        rows.append({**common, "params": params, "region": r["region"], "metric": r["metric"],
                                     "clean": before, "adversarial": r["value"], "degradation": drop,
                                     "rel_degradation": rel, "linf_255": record["linf_255"],
                                     "l2_255": record["l2_255"], "ssim": record["ssim"], "seed": seed,
                                     "source_sha256": models.sha(c.source), "target_sha256": models.sha(t)})
                    else:
                        band_rows.append({**common, "band": r["band"], "energy_fraction": r["energy_fraction"],
                                          "region": r["region"], "metric": r["metric"], "clean": before,
                                          "adversarial": r["value"], "degradation": drop})
    table = pd.DataFrame(rows, columns=TRANSFER_COLUMNS)
    bands = pd.DataFrame(band_rows, columns=BAND_COLUMNS)
    out = store.root
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "transfer.csv", table.to_csv(index=False))
    if cfg.bands:
        atomic_write_text(out / "bands.csv", bands.to_csv(index=False))
    meta = {"config": to_plain(cfg), "cells": [to_plain(c.__dict__) for c in cells],
            "cases": [c.id for c in cases], "crafted_now": len(crafted), "environment": environment(),
            "checkpoints": {n: s.sha256 for n, s in models.sources.items()}}
    atomic_write_text(out / "transfer.json", json.dumps(meta, indent=2, default=str) + "\n")
    return TransferResult(table, bands, crafted, out)
