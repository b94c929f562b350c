"""Render synthetic (or any BraTS-style) cases as PNG: one row per case, an axial slice through the tumour centre.

Columns: T1, T1ce, T2, FLAIR and the labels on FLAIR (NCR red, ED green, ET yellow, with a label key), drawn by
:func:`volrob.report.slices.cases_figure`.

    python scripts/render_synth.py DATA_DIR -o synthetic.png --cases 4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from volrob.data.labels import get_convention
from volrob.data.manifest import load_manifest
from volrob.errors import ConfigError, VolrobError
from volrob.report.figure import SYNTHETIC_NOTE, figure_note
from volrob.report.slices import CaseRow, cases_plot, tumour_slice

COLUMNS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
__all__ = ["COLUMNS", "load_rows", "main", "tumour_slice"]


def _ras(path: Path) -> nib.Nifti1Image:
    return nib.as_closest_canonical(nib.load(path))


def load_rows(data_dir: Path, count: int) -> tuple[list[CaseRow], tuple[float, ...]]:
    """The labelled cases among the first ``count`` of ``data_dir/manifest.json`` as RAS arrays (canonical labels),
    and the voxel spacing of the first."""
    manifest = load_manifest(data_dir / "manifest.json")
    convention = get_convention(manifest.label_convention)
    rows: list[CaseRow] = []
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    for case in manifest.cases[:count]:
        if case.label is None:
            continue
        seg = _ras(manifest.resolve(case.label))
        images = {m: np.asanyarray(_ras(manifest.resolve(case.images[m].path)).dataobj, dtype=np.float32)
                  for m in COLUMNS}
        if not rows:
            spacing = tuple(float(z) for z in seg.header.get_zooms()[:3])
        rows.append((case.id, images, convention.to_canonical(np.asanyarray(seg.dataobj).astype(np.int16))))
    return rows, spacing


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``render_synth.py DIR -o PNG [--cases K]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder holding manifest.json")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--cases", type=int, default=4, help="number of cases (rows) to render (default 4)")
    args = parser.parse_args(argv)
    try:
        if args.cases < 1:
            raise ConfigError(f"--cases must be >= 1, got {args.cases}")
        rows, spacing = load_rows(args.data_dir, args.cases)
        if not rows:
            raise ConfigError("no labelled case to render", path=args.data_dir / "manifest.json")
        synthetic = load_manifest(args.data_dir / "manifest.json").layout == "synthetic"
        with figure_note(SYNTHETIC_NOTE if synthetic else None):
            cases_plot(rows, args.output, spacing)
    except VolrobError as err:
        print(f"render_synth: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
