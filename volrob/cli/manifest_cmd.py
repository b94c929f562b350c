"""``volrob manifest``: build a manifest from a dataset folder, or check a manifest against its files.

Exit codes of ``volrob manifest check``: 0 when every case passes, 1 when any case has a problem (each one listed),
2 when the manifest itself cannot be read or parsed. ``volrob manifest build`` exits 0 on success and 2 on bad
input, including an existing output file without ``--force``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from volrob.data.checks import format_verdict, iter_verdicts, summarize
from volrob.data.layouts import SCANNABLE, build_manifest
from volrob.data.manifest import SPLITS, load_manifest
from volrob.data.readers import BACKENDS
from volrob.errors import DataError


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def run_build(args: argparse.Namespace) -> int:
    """Scan ``args.root`` and write the manifest to ``args.output`` (never over an existing file without --force)."""
    out = Path(args.output)
    if out.exists() and not args.force:
        raise DataError("output file already exists; pass --force to overwrite it", path=out)
    if out.exists() and out.is_dir():
        raise DataError("output path is a folder, not a file", path=out)
    manifest = build_manifest(
        args.root, args.layout, val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        hash_files=args.hash, name=args.name, manifest_dir=out.parent,
    )
    manifest.save(out)
    counts = Counter(c.split for c in manifest.cases)
    splits = ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLITS)
    print(f"wrote {out}: {len(manifest.cases)} {manifest.layout} cases ({splits}), root {manifest.root}"
          f"{', with sha256' if args.hash else ''}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Check every case; print one row per case and a summary. Returns 0 if all cases pass, else 1."""
    manifest = load_manifest(args.file)
    width = max(len(c.id) for c in manifest.cases)
    verdicts = []
    for verdict in iter_verdicts(manifest, verify_hashes=not args.no_hash, backend=args.backend):
        print(format_verdict(verdict, width), flush=True)
        verdicts.append(verdict)
    print(summarize(verdicts))
    return 0 if all(v.ok for v in verdicts) else 1


def register(subparsers: Any) -> None:
    """Add ``manifest build`` and ``manifest check`` to the ``volrob`` command line."""
    parser = subparsers.add_parser(
        "manifest",
        help="build or check a data manifest",
        description="Build a data manifest (JSON list of cases, files, splits and hashes) from a dataset folder, "
        "or check that a manifest's files exist, are readable and agree with each other.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    build = actions.add_parser(
        "build",
        help="scan a dataset folder into a manifest",
        description="Scan a BraTS 2021, BraTS 2023 or MSD Task01 folder into a manifest. Labelled cases are split "
        "train/val/test by a seeded shuffle (same seed, same manifest); cases without a label are 'unlabelled'. "
        "The data root is stored relative to the manifest's folder. An existing FILE is never overwritten "
        "unless --force is given.",
    )
    build.add_argument("root", metavar="ROOT", help="dataset folder (holding the case folders, or dataset.json)")
    build.add_argument("--layout", required=True, choices=SCANNABLE, help="how the dataset folder is organised")
    build.add_argument("-o", "--output", required=True, metavar="FILE", help="manifest file to write (.json)")
    build.add_argument("--val-fraction", type=_fraction, default=0.2, metavar="F",
                       help="fraction of labelled cases for validation (default 0.2)")
    build.add_argument("--test-fraction", type=_fraction, default=0.0, metavar="F",
                       help="fraction of labelled cases held out for testing (default 0)")
    build.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the split shuffle (default 0)")
    build.add_argument("--hash", action="store_true", help="record each file's sha256 (reads every byte)")
    build.add_argument("--name", default=None, help="manifest name (default: the dataset folder's name)")
    build.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    build.set_defaults(func=run_build)

    check = actions.add_parser(
        "check",
        help="check a manifest's files (exit 0 all OK, 1 problems found, 2 unreadable manifest)",
        description="Read every file of every case and report per case: files exist and are readable, images are "
        "3D (or 4D with a channel) and finite, modalities and label share shape, spacing and affine, label values "
        "fit the case's convention, sha256 hashes match. Exit status: 0 when every case passes, 1 when any case "
        "has a problem, 2 when the manifest itself cannot be read.",
    )
    check.add_argument("file", metavar="FILE", help="manifest file (.json)")
    check.add_argument("--no-hash", action="store_true", help="skip sha256 verification (faster)")
    check.add_argument("--backend", choices=BACKENDS, default="nibabel",
                       help="reader for NIfTI files (default nibabel; .mha/.mhd/.nrrd always use sitk)")
    check.set_defaults(func=run_check)
