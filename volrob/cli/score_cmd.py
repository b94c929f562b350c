"""``volrob score PRED (--reference REF | --manifest FILE [--split S]) -o OUT``: score existing predicted label maps
against references with the official BraTS metrics (or any metric set), without a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from volrob.cli.options import add_metric_options
from volrob.data.labels import CONVENTIONS
from volrob.evaluation.empty_policy import POLICIES

DEFAULT_CONVENTION = "brats2023"
LESION_COLUMNS = ["case", "region", "kind", "id", "volume_mm3", "hits", "dice", "hd95", "counted"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="score predicted label maps (NIfTI) against references: Dice, HD95, NSD, lesion-wise",
        description="Score a predicted label map, or a folder of them, against references: --reference (a file or a "
                    "folder, matched by case id: the file name without .nii/.nii.gz and a trailing -seg, _seg, "
                    "-pred or _pred) or --manifest (its label files). Spacing comes from the reference header. "
                    "Writes the tidy rows (case, region, metric, value, challenge, files) to OUT.csv (or "
                    "OUT/scores.csv), the lesion-wise detail beside it (_lesions.csv / lesions.csv) and the metric "
                    "set with every definition's parameters (.json / score.json), then prints the mean per region "
                    "and metric. See docs/scoring.md.",
    )
    p.add_argument("predictions", help="a predicted label map (.nii/.nii.gz) or a folder of them")
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--reference", help="the reference label map, or a folder of them")
    ref.add_argument("--manifest", help="a data manifest: its cases' label files are the references")
    p.add_argument("--split", help="with --manifest: only the cases of this split (default: every labelled case)")
    p.add_argument("--ref-labels", choices=sorted(CONVENTIONS),
                   help=f"label convention of the references (default: the manifest's, else {DEFAULT_CONVENTION})")
    p.add_argument("--pred-labels", choices=sorted(CONVENTIONS),
                   help="label convention of the predictions (default: the references')")
    add_metric_options(p)
    p.add_argument("--empty-policy", choices=POLICIES, default="brats",
                   help="scores when prediction or reference is empty (see docs/metrics.md)")
    p.add_argument("--nsd-tolerance", type=float, default=1.0, help="surface Dice tolerance in mm (default 1.0)")
    p.add_argument("-o", "--out", required=True, help="output CSV file (ending in .csv) or folder")
    p.add_argument("--force", action="store_true", help="replace output files that already exist")
    p.set_defaults(func=run)


def output_paths(out: str, force: bool) -> dict[str, Path]:
    """Where the scores, lesion detail and record go; existing files without ``force`` are an error."""
    from volrob.errors import DataError

    path = Path(out)
    if path.suffix.lower() == ".csv":
        paths = {"scores": path, "lesions": path.with_name(f"{path.stem}_lesions.csv"),
                 "record": path.with_suffix(".json")}
    else:
        if path.exists() and not path.is_dir():
            raise DataError("output must be a .csv file or a folder", path=path)
        paths = {"scores": path / "scores.csv", "lesions": path / "lesions.csv", "record": path / "score.json"}
    for p in paths.values():
        if p.exists() and not force:
            raise DataError("output file already exists; pass --force to replace it", path=p)
    return paths


def references(args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, str], str]:
    """Reference files and conventions by case id, and the convention that sets the default metrics."""
    from volrob.data.manifest import load_manifest
    from volrob.data.pairing import label_files
    from volrob.errors import DataError

    if args.manifest is None:
        if args.split is not None:
            raise DataError("--split goes with --manifest")
        files = label_files(args.reference, "reference")
        conv = args.ref_labels or DEFAULT_CONVENTION
        return files, dict.fromkeys(files, conv), conv
    manifest = load_manifest(args.manifest)
    cases = manifest.split(args.split) if args.split else manifest.cases
    cases = [c for c in cases if c.label is not None]
    if not cases:
        where = f"split {args.split!r}" if args.split else "the manifest"
        raise DataError(f"{where} has no labelled cases", path=manifest.path)
    files = {c.id: manifest.resolve(c.label) for c in cases}  # type: ignore[arg-type]
    conventions = {c.id: args.ref_labels or c.label_convention for c in cases}
    return files, conventions, args.ref_labels or manifest.label_convention


def read_pair(pred_path: Path, ref_path: Path, pred_conv: str, ref_conv: str) -> tuple[np.ndarray, np.ndarray,
                                                                                        tuple[float, ...]]:
    """Both label maps, checked: same shape and affine, values of their conventions; spacing of the reference."""
    from volrob.data.cases import AFFINE_ATOL
    from volrob.data.readers import read_label
    from volrob.errors import DataError

    ref, pred = read_label(ref_path), read_label(pred_path)
    for vol, path, conv in ((ref, ref_path, ref_conv), (pred, pred_path, pred_conv)):
        bad = CONVENTIONS[conv].unknown_values(vol.array)
        if bad:
            raise DataError(f"label values {bad} are not allowed by convention {conv!r} {CONVENTIONS[conv].allowed}",
                            path=path)
    if pred.shape != ref.shape:
        raise DataError(f"shape {pred.shape} differs from the reference's {ref.shape} ({ref_path})", path=pred_path)
    diff = float(np.abs(pred.affine - ref.affine).max())
    if diff > AFFINE_ATOL:
        raise DataError(f"affine differs from the reference's (max difference {diff:.4g} > {AFFINE_ATOL:g}; "
                        f"{ref_path})", path=pred_path)
    return pred.array, ref.array, ref.spacing


def _lesion_rows(case: str, scored: Any, penalty: float) -> list[dict[str, Any]]:
    rows = []
    for region, lw in scored.lesions.items():
        rows += [{"case": case, "region": region, "kind": "lesion", "id": les.id, "volume_mm3": les.volume_mm3,
                  "hits": " ".join(map(str, les.hits)), "dice": les.dice, "hd95": les.hd95, "counted": les.counted}
                 for les in lw.lesions]
        rows += [{"case": case, "region": region, "kind": "false_positive", "id": fid, "volume_mm3": vol, "hits": "",
                  "dice": 0.0, "hd95": penalty, "counted": True}
                 for fid, vol in zip(lw.false_positives, lw.false_positive_volumes_mm3, strict=True)]
    return rows


def lesion_lines(lesions: Any) -> list[str]:
    """Per region: counted lesions, missed ones and false positives over all cases."""
    if lesions.empty:
        return []
    out = []
    for region, g in lesions.groupby("region", sort=False):
        counted = g[(g.kind == "lesion") & g.counted]
        missed = counted[counted.hits == ""]
        fps = g[g.kind == "false_positive"]
        out.append(f"  {region}: {len(counted)} lesion(s) counted ({len(missed)} missed, "
                   f"{len(g[g.kind == 'lesion']) - len(counted)} below the volume threshold), "
                   f"{len(fps)} false positive(s)")
    return out


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from volrob.data.pairing import label_files, pair_files
    from volrob.errors import DataError
    from volrob.evaluation.label_maps import score_label_maps
    from volrob.evaluation.metric_set import resolve_metric_set
    from volrob.evaluation.summary import format_summary, summarize
    from volrob.io import atomic_write_text

    paths = output_paths(args.out, args.force)
    refs, ref_conventions, convention = references(args)
    pairing = pair_files(label_files(args.predictions, "predictions"), refs)
    if not pairing.pairs:
        raise DataError(f"no prediction matches a reference case id (predictions: {pairing.without_reference[:3]}, "
                        f"references: {pairing.without_prediction[:3]})", path=args.predictions)
    metric_set = resolve_metric_set(convention, args.metrics, args.challenge, empty_policy=args.empty_policy,
                                    nsd_tolerance_mm=args.nsd_tolerance)
    rows, lesion_rows = [], []
    for case, pred_path, ref_path in pairing.pairs:
        ref_conv = ref_conventions[case]
        pred_conv = args.pred_labels or ref_conv
        pred, ref, spacing = read_pair(pred_path, ref_path, pred_conv, ref_conv)
        scored = score_label_maps(pred, ref, spacing, metric_set, pred_convention=pred_conv, ref_convention=ref_conv)
        rows += [{"case": case, **r, "challenge": metric_set.challenge or "", "prediction": str(pred_path),
                  "reference": str(ref_path)} for r in scored.rows]
        if scored.lesions:
            lesion_rows += _lesion_rows(case, scored, metric_set.challenge_params.miss_penalty_mm)  # type: ignore
    table = pd.DataFrame(rows)
    lesions = pd.DataFrame(lesion_rows, columns=LESION_COLUMNS)
    record = {"command": "score", "predictions": str(Path(args.predictions).resolve()),
              "references": str(Path(args.manifest or args.reference).resolve()), "split": args.split,
              "pred_labels": args.pred_labels, "ref_labels": args.ref_labels, "cases": [c for c, _, _ in pairing.pairs],
              "without_reference": pairing.without_reference, "without_prediction": pairing.without_prediction,
              "scoring": metric_set.record()}
    atomic_write_text(paths["scores"], table.to_csv(index=False))
    if any(m.startswith("lesion_") for m in metric_set.metrics):
        atomic_write_text(paths["lesions"], lesions.to_csv(index=False))
    atomic_write_text(paths["record"], json.dumps(record, indent=2) + "\n")
    if pairing.without_reference:
        print(f"{len(pairing.without_reference)} prediction(s) without a reference, not scored: "
              f"{', '.join(pairing.without_reference[:10])}")
    if pairing.without_prediction:
        print(f"{len(pairing.without_prediction)} reference case(s) without a prediction, not scored: "
              f"{', '.join(pairing.without_prediction[:10])}")
    print(f"{len(pairing.pairs)} case(s) scored ({', '.join(metric_set.metrics)}"
          f"{'; challenge ' + metric_set.challenge if metric_set.challenge else ''}); rows in {paths['scores']}")
    print(format_summary(summarize(table[["region", "metric", "value"]], n_boot=200)))
    for line in lesion_lines(lesions):
        print(line)
    return 0
