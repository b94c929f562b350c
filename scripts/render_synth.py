"""Render synthetic (or any BraTS-style) cases as PNG: one row per case, an axial slice through the tumour centre.

Columns: T1, T1ce, T2, FLAIR and the label overlay on FLAIR (NCR red, ED green, ET yellow).

    python scripts/render_synth.py DATA_DIR -o synthetic.png --cases 4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
from matplotlib.colors import ListedColormap

from volrob.data.manifest import load_manifest
from volrob.errors import ConfigError, VolrobError
from volrob.io import atomic_path

COLUMNS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
LABEL_COLOURS = {1: (0.9, 0.1, 0.1), 2: (0.1, 0.8, 0.2), 4: (1.0, 0.9, 0.1), 3: (1.0, 0.9, 0.1)}


def tumour_slice(seg: np.ndarray) -> int:
    """Axial index (last axis) through the centre of mass of the labelled voxels (the middle if none)."""
    zs = np.nonzero(seg)[2]
    return round(float(zs.mean())) if zs.size else seg.shape[2] // 2


def _display(slab: np.ndarray) -> np.ndarray:
    """Axial slab (x, y) as an image with anterior at the top and the patient's right on the left."""
    return np.flipud(np.fliplr(slab.T))


def render(rows: Sequence[tuple[str, dict[str, np.ndarray], np.ndarray]], target: str | Path) -> Path:
    """Write a PNG of ``rows`` (case id, modality -> volume, label volume) atomically to ``target``."""
    fig, axes = plt.subplots(len(rows), len(COLUMNS) + 1, figsize=(2.4 * (len(COLUMNS) + 1), 2.5 * len(rows)),
                             squeeze=False, facecolor="black")
    cmap = ListedColormap([(0, 0, 0, 0), *[(*LABEL_COLOURS.get(v, (1, 1, 1)), 0.55) for v in range(1, 5)]])
    for r, (cid, images, seg) in enumerate(rows):
        k = tumour_slice(seg)
        for c, name in enumerate((*COLUMNS, "label")):
            ax = axes[r, c]
            base = images["flair" if name == "label" else name][:, :, k]
            brain = base[base > 0]
            vmax = float(np.percentile(brain, 99.5)) if brain.size else 1.0
            ax.imshow(_display(base), cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest")
            if name == "label":
                ax.imshow(_display(np.clip(seg[:, :, k], 0, 4)), cmap=cmap, vmin=0, vmax=4, interpolation="nearest")
            ax.set_axis_off()
            title = "labels on FLAIR" if name == "label" else name.upper()
            title = f"{cid} z={k}  {title}" if c == 0 else title
            ax.set_title(title, color="white", fontsize=8)
    fig.tight_layout()
    target = Path(target)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, facecolor="black")
    plt.close(fig)
    return target


def load_rows(data_dir: Path, count: int) -> list[tuple[str, dict[str, np.ndarray], np.ndarray]]:
    """The first ``count`` cases of ``data_dir/manifest.json`` as arrays."""
    manifest = load_manifest(data_dir / "manifest.json")
    rows = []
    for case in manifest.cases[:count]:
        if case.label is None:
            continue
        images = {m: np.asanyarray(nib.load(manifest.resolve(case.images[m].path)).dataobj, dtype=np.float32)
                  for m in COLUMNS}
        seg = np.asanyarray(nib.load(manifest.resolve(case.label)).dataobj).astype(np.int16)
        rows.append((case.id, images, seg))
    return rows


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
        rows = load_rows(args.data_dir, args.cases)
        if not rows:
            raise ConfigError("no labelled case to render", path=args.data_dir / "manifest.json")
        render(rows, args.output)
    except VolrobError as err:
        print(f"render_synth: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
