"""``volrob attack``: attack every case of a manifest split with one checkpoint and one attack configuration.

Per case: preprocess to the [0, 1] attack space, attack the whole volume through the predictor, segment the clean
and the adversarial input, map both back to the source grid and score them against the source labels. One result
row per case × region × metric with the clean and adversarial value, the degradation, the perturbation's size and
visibility, the attack time and full provenance. Adversarial volumes are written as float32 NIfTI with the source
affine (values in the attack space, see the sidecar JSON).
"""

from __future__ import annotations

import io
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from volrob import attacks
from volrob.attacks.base import AttackResult
from volrob.data.cases import load_case
from volrob.data.labels import canonical_to_regions
from volrob.data.manifest import labelled_cases, load_manifest
from volrob.data.preprocess import preprocess
from volrob.data.readers import write_nifti
from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import get_policy
from volrob.evaluation.metrics import case_metrics
from volrob.evaluation.summary import paired_wilcoxon
from volrob.inference.segment import predict_regions, to_source_grid
from volrob.io import atomic_write_text
from volrob.robustness.model_source import ModelSource
from volrob.robustness.perturbation import perturbation_stats
from volrob.robustness.roi_crop import crop_box
from volrob.robustness.scoring import score_on_source
from volrob.utils.runtime import environment, resolve_device

RESULT_COLUMNS = [
    "case", "split", "model", "checkpoint_sha256", "attack", "params", "threat", "seed", "region", "metric",
    "clean", "adversarial", "degradation", "rel_degradation", "linf_255", "l2_255", "ssim", "psnr",
    "attack_seconds",
]
HIGHER_IS_BETTER = {"dice": True, "nsd": True, "hd95": False}


@dataclass
class AttackRunResult:
    """Tidy result rows, the per-region summary, and where they were written."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    out_dir: Path


def case_seed(seed: int, case_id: str) -> int:
    """The attack seed of one case: depends on the run seed and the case id only, never on the order."""
    return int(np.random.SeedSequence([seed, zlib.crc32(case_id.encode())]).generate_state(1)[0] % (2**31))


def open_run(model: str | Path | ModelSource, manifest: str | Path, split: str, device: str,
             window: dict[str, Any] | None) -> tuple[ModelSource, Any, list[Any], torch.device, torch.nn.Module]:
    """The model source, manifest, scored cases of ``split``, device and the predictor on it in eval mode."""
    src = model if isinstance(model, ModelSource) else ModelSource.from_checkpoint(model, window)
    man = load_manifest(manifest)
    cases = labelled_cases(man, split, src.modalities)
    dev = resolve_device(device)
    return src, man, cases, dev, src.predictor.to(dev).eval()


def degradation(metric: str, clean: float, adversarial: float) -> tuple[float, float]:
    """How much worse the adversarial score is (positive = worse) and that as a share of the clean score.

    Dice and NSD: ``clean - adversarial``; HD95: ``adversarial - clean``. The share is 0 where the clean score is
    0 (nothing to lose, or a perfect HD95 of 0 mm).
    """
    drop = clean - adversarial if HIGHER_IS_BETTER[metric] else adversarial - clean
    return drop, (drop / clean if clean > 0 else 0.0)


def summarise_attack(rows: pd.DataFrame) -> pd.DataFrame:
    """Per region and metric: mean clean, mean adversarial, relative change of the mean, paired Wilcoxon p."""
    out = []
    for (region, metric), g in rows.groupby(["region", "metric"], sort=False):
        clean, adv = g["clean"].to_numpy(float), g["adversarial"].to_numpy(float)
        drop, rel = degradation(str(metric), float(clean.mean()), float(adv.mean()))
        p = paired_wilcoxon(clean, adv).pvalue if len(g) > 1 and not np.allclose(clean, adv) else 1.0
        out.append({"region": region, "metric": metric, "n": len(g), "clean_mean": float(clean.mean()),
                    "adversarial_mean": float(adv.mean()), "degradation": drop, "rel_degradation": rel,
                    "wilcoxon_p": float(p), "linf_255_max": float(g["linf_255"].max()),
                    "ssim_mean": float(g["ssim"].mean())})
    return pd.DataFrame(out)


def format_attack_summary(summary: pd.DataFrame) -> str:
    """Text table: Dice and HD95 clean → adversarial per region, relative Dice drop, Wilcoxon p."""
    lines = [f"{'region':<6}  {'dice clean → adv':<18}  {'rel drop':>8}  {'p':>7}  {'hd95 clean → adv (mm)':<22}"]
    for region in ("TC", "WT", "ET"):
        d = summary[(summary.region == region) & (summary.metric == "dice")]
        h = summary[(summary.region == region) & (summary.metric == "hd95")]
        if d.empty:
            continue
        d, h = d.iloc[0], h.iloc[0]
        lines.append(f"{region:<6}  {d.clean_mean:.3f} → {d.adversarial_mean:.3f}    {d.rel_degradation:>7.1%}  "
                     f"{d.wilcoxon_p:>7.3f}  {h.clean_mean:.2f} → {h.adversarial_mean:.2f}")
    return "\n".join(lines)


def attack_manifest(
    model: str | Path | ModelSource, manifest: str | Path, out_dir: str | Path, *, attack: str,
    attack_options: dict[str, Any] | None = None, split: str = "test", seed: int = 0, device: str = "auto",
    window: dict[str, Any] | None = None, empty_policy: str = "brats", nsd_tolerance_mm: float = 1.0,
    save_volumes: bool = True, force: bool = False, progress: bool = True, roi_crop: str | None = None,
) -> AttackRunResult:
    """Attack ``split`` of ``manifest`` with ``model`` (a checkpoint path or a :class:`ModelSource`); writes
    results.csv, summary.csv, run.json and (unless disabled) adversarial volumes. ``attack_options`` are the
    attack's keyword options (e.g. eps, steps); ``window`` overrides a checkpoint's sliding-window settings.
    ``roi_crop`` (``"tumour"`` or ``"centre"``) switches to the plain ROI-crop protocol
    (:mod:`volrob.robustness.roi_crop`): only that crop is attacked and scored, on the preprocessed grid."""
    out = Path(out_dir)
    if (out / "results.csv").exists() and not force:
        raise ConfigError("already holds results.csv; use --force to replace it or choose another output folder",
                          path=out)
    opts = dict(attack_options or {})
    if "seed" in opts:
        raise ConfigError("give the seed as the run's seed, not as an attack option")
    attacks.create(attack, **opts, seed=seed)  # validate the configuration before any work
    if roi_crop is not None:
        crop_box((1, 1, 1), (1, 1, 1), roi_crop)  # validate the protocol before any work
    policy = get_policy(empty_policy)
    src, man, cases, dev, predictor = open_run(model, manifest, split, device, window)

    rows: list[dict[str, Any]] = []
    records: dict[str, Any] = {}
    for case in tqdm(cases, desc=f"attack {attack}", disable=not progress, leave=False, dynamic_ncols=True):
        data = load_case(man, case)
        p = preprocess(data.image, data.label, data.affine, src.preprocessing)
        x = p.image.as_tensor()[None].to(dev)
        lab = p.label.as_tensor()[None]  # type: ignore[union-attr]
        box = (slice(None), slice(None)) + (crop_box(x.shape[2:], predictor.window.roi_size, roi_crop,
                                                      canonical_to_regions(lab)[0, 1])
                                             if roi_crop else ())
        target = canonical_to_regions(lab).float() if predictor.output_mode == "regions" else lab.long()
        atk = attacks.create(attack, **opts, seed=case_seed(seed, case.id))
        tic = time.perf_counter()
        res = atk(predictor, x[box], target[box].to(dev))
        seconds = time.perf_counter() - tic
        scores = {}
        if roi_crop:
            gt_crop = canonical_to_regions(lab)[0][box[1:]]
            for kind, inp in (("clean", x[box]), ("adversarial", res.x_adv)):
                scores[kind] = case_metrics(predict_regions(predictor, inp[0], dev), gt_crop,
                                            src.preprocessing.spacing, nsd_tolerance_mm=nsd_tolerance_mm,
                                            empty_policy=policy)
            x_adv_full = x.clone()
            x_adv_full[box] = res.x_adv
            pert = perturbation_stats(x[box], res.x_adv)[0]
            res = AttackResult(x_adv_full, res.record)
        else:
            gt = canonical_to_regions(data.label)
            for kind, inp in (("clean", x), ("adversarial", res.x_adv)):
                scores[kind] = score_on_source(predictor, inp, p, gt, data.spacing, dev,
                                               nsd_tolerance_mm=nsd_tolerance_mm, empty_policy=policy)
            pert = perturbation_stats(x, res.x_adv)[0]
        desc = atk.describe()
        for c_row, a_row in zip(scores["clean"], scores["adversarial"], strict=True):
            drop, rel = degradation(c_row["metric"], c_row["value"], a_row["value"])
            rows.append({
                "case": case.id, "split": case.split, "model": src.name, "checkpoint_sha256": src.sha256,
                "attack": attack, "params": json.dumps(desc["params"], sort_keys=True),
                "threat": json.dumps(desc["threat"], sort_keys=True), "seed": desc["seed"],
                "region": c_row["region"], "metric": c_row["metric"], "clean": c_row["value"],
                "adversarial": a_row["value"], "degradation": drop, "rel_degradation": rel, **pert,
                "attack_seconds": round(seconds, 3),
            })
        records[case.id] = res.record
        if save_volumes:
            adv_src = to_source_grid(res.x_adv[0], p, nearest=False).astype(np.float32)
            folder = out / "adversarial" / case.id
            for c, mod in enumerate(src.modalities):
                write_nifti(folder / f"{case.id}_{mod}.nii.gz", adv_src[c], data.affine, dtype=np.float32)
            sidecar = {"case": case.id, "values": "attack space: each channel scaled to [0, 1] by the checkpoint's "
                       "preprocessing (see run.json), on the source voxel grid", "record": res.record}
            atomic_write_text(folder / f"{case.id}_attack.json", json.dumps(sidecar, indent=2, default=str) + "\n")
    df = pd.DataFrame.from_records(rows, columns=RESULT_COLUMNS)
    summary = summarise_attack(df)
    run = {
        "model": src.name, "checkpoint_sha256": src.sha256, "origin": src.origin,
        "manifest": str(manifest), "manifest_sha256": man.digest(), "split": split, "seed": seed,
        "attack": attack, "attack_options": opts, "window": predictor.window.to_dict(),
        "protocol": f"roi_crop:{roi_crop}" if roi_crop else "volume", "preprocessing":
        src.preprocessing.to_dict(), "empty_policy": policy.name, "nsd_tolerance_mm": nsd_tolerance_mm,
        "device": str(dev), "environment": environment(), "records": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "run.json", json.dumps(run, indent=2, default=str) + "\n")
    for name, frame in (("summary.csv", summary), ("results.csv", df)):  # results.csv last: it marks completion
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        atomic_write_text(out / name, buf.getvalue())
    return AttackRunResult(df, summary, out)
