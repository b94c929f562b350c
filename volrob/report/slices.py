"""Brain slices: the one place that draws them (a run's worst-case views and the synthetic-case overview).

Volumes are in RAS voxel order (axis 0 left → right, 1 posterior → anterior, 2 inferior → superior). Slices are
shown anatomically: axial with anterior at the top and the patient's right on the left (radiological), coronal with
superior at the top and the patient's right on the left, sagittal with superior at the top and anterior on the
left; each pixel's aspect follows the voxel spacing. Images are grey from 0 to the 99.5th percentile of the brain
(non-zero voxels); label maps are canonical classes (1 NCR red, 2 ED green, 3 ET yellow) drawn over an image, with
a label key on every figure that shows them.

A **view** (:func:`load_view`, written by :mod:`volrob.engine.views`) is a dict of the fields of its JSON record plus
``planes``: ``{plane: {kind: 2-D array}}`` for the planes of :data:`PLANES` and the kinds of :data:`KINDS`, stored in
the ``.npz`` under ``<plane>_<kind>`` (:func:`array_key`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from volrob.errors import ConfigError
from volrob.report.figure import check_png_path, new_figure, save_png

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
PLANE_AXIS: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}
"""The RAS axis each plane cuts across."""
AXIS_NAMES: tuple[str, ...] = ("x", "y", "z")
KINDS: tuple[str, ...] = ("clean", "adversarial", "perturbation", "reference", "clean_prediction",
                          "adversarial_prediction")
"""The arrays of a view per plane: images of the display channel (float32; the perturbation in attack-space units)
and canonical class maps (uint8)."""
IMAGE_KINDS: tuple[str, ...] = KINDS[:3]
LABEL_KINDS: tuple[str, ...] = KINDS[3:]
VIEW_FIELDS: tuple[str, ...] = ("case", "cell", "model", "attack", "budget_key", "budget", "region", "channel",
                                "slices", "spacing", "amplification", "linf_255", "dice")
"""The fields a view needs besides ``planes`` (its JSON record holds more: the unit parameters, the source of the
perturbation, the slice rule)."""
LABEL_NAMES: dict[int, str] = {1: "NCR", 2: "ED", 3: "ET"}
LABEL_COLOURS: dict[int, tuple[float, float, float]] = {1: (0.9, 0.1, 0.1), 2: (0.1, 0.8, 0.2), 3: (1.0, 0.9, 0.1)}
LABEL_ALPHA = 0.55
PERTURBATION_LIMIT_255 = 255.0
"""The perturbation panel spans ±this (1/255 units): the whole [0, 1] attack space, so the amplified perturbation is
seen on the scale of the image itself."""
PERTURBATION_CMAP = "berlin"
"""Diverging, dark at 0 (the figures are dark): blue where the attack lowered the intensity, red where it raised it."""
COLUMN_TITLES: dict[str, str] = {"clean": "clean", "adversarial": "adversarial", "perturbation": "perturbation",
                                 "reference": "reference", "clean_prediction": "clean prediction",
                                 "adversarial_prediction": "adversarial prediction"}
DARK = {"figure.facecolor": "black", "axes.facecolor": "black", "savefig.facecolor": "black", "text.color": "white",
        "axes.labelcolor": "white", "xtick.color": "white", "ytick.color": "white", "axes.edgecolor": "0.4",
        "legend.facecolor": "black", "legend.edgecolor": "0.4"}


# -- geometry ---------------------------------------------------------------------------------------------------
def _plane(plane: str) -> int:
    if plane not in PLANE_AXIS:
        raise ConfigError(f"plane must be one of {list(PLANES)}, got {plane!r}")
    return PLANE_AXIS[plane]


def take(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2-D slice ``index`` of an RAS volume ``(x, y, z)`` across ``plane``'s axis, in-plane axes in RAS order."""
    return np.take(np.asarray(volume), index, axis=_plane(plane))


def display(slab: np.ndarray, plane: str) -> np.ndarray:
    """A slice from :func:`take` as shown: its second in-plane axis (y or z) upwards, its first (x or y) with the
    patient's right (axial, coronal) or anterior (sagittal) on the left."""
    _plane(plane)
    return np.ascontiguousarray(np.asarray(slab).T[::-1, ::-1])


def aspect(spacing: Sequence[float], plane: str) -> float:
    """Height / width of one displayed pixel of ``plane`` for voxel ``spacing`` (mm, RAS order)."""
    first, second = (a for a in range(3) if a != _plane(plane))
    return float(spacing[second]) / float(spacing[first])


def tumour_slice(label: np.ndarray, axis: int = 2) -> int:
    """Index along ``axis`` through the centre of mass of the labelled voxels (the middle if there are none)."""
    where = np.nonzero(np.asarray(label))[axis]
    return round(float(where.mean())) if where.size else np.shape(label)[axis] // 2


def grey_max(image: np.ndarray) -> float:
    """The 99.5th percentile of the brain (non-zero voxels) of ``image``; 1 when there is none."""
    brain = np.asarray(image)[np.asarray(image) > 0]
    return float(np.percentile(brain, 99.5)) if brain.size else 1.0


def amplification(linf_255: float) -> float:
    """The largest of 1, 2, 5 × 10ⁿ (at least 1) that keeps a perturbation of L∞ ``linf_255`` (1/255 units) within
    the perturbation panel's ±:data:`PERTURBATION_LIMIT_255`."""
    if not np.isfinite(linf_255) or linf_255 <= 0 or linf_255 >= PERTURBATION_LIMIT_255:
        return 1.0
    best = 1.0
    for power in range(0, 7):
        for step in (1.0, 2.0, 5.0):
            k = step * 10.0 ** power
            if k * linf_255 <= PERTURBATION_LIMIT_255 * (1 + 1e-9):
                best = max(best, k)
    return best


# -- drawing ----------------------------------------------------------------------------------------------------
def label_cmap() -> ListedColormap:
    """Canonical classes 0..3: background transparent, NCR red, ED green, ET yellow (semi-transparent)."""
    return ListedColormap([(0.0, 0.0, 0.0, 0.0), *[(*LABEL_COLOURS[c], LABEL_ALPHA) for c in (1, 2, 3)]])


def label_key(fig: Figure) -> None:
    """The legend of the label colours (NCR, ED, ET) below the panels of ``fig``."""
    handles = [Patch(facecolor=LABEL_COLOURS[c], label=LABEL_NAMES[c]) for c in sorted(LABEL_NAMES)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, title="labels")


def _clean_axes(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def draw_image(ax: Axes, slab: np.ndarray, plane: str, spacing: Sequence[float], vmax: float) -> None:
    """A grey image slice from 0 to ``vmax``."""
    ax.imshow(display(slab, plane), cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest",
              aspect=aspect(spacing, plane))
    _clean_axes(ax)


def draw_labels(ax: Axes, labels: np.ndarray, plane: str, spacing: Sequence[float]) -> None:
    """A canonical class map over what ``ax`` shows (background transparent)."""
    ax.imshow(display(np.clip(labels, 0, 3).astype(np.uint8), plane), cmap=label_cmap(), vmin=-0.5, vmax=3.5,
              interpolation="nearest", aspect=aspect(spacing, plane))


# -- views ------------------------------------------------------------------------------------------------------
def array_key(plane: str, kind: str) -> str:
    """The ``.npz`` key of one array of a view."""
    return f"{plane}_{kind}"


def check_view(view: Any) -> dict[str, Any]:
    """``view`` when it has every field and array a figure needs; ConfigError naming what is missing."""
    if not isinstance(view, Mapping):
        raise ConfigError(f"view: expected a dict, got {type(view).__name__}")
    missing = [k for k in (*VIEW_FIELDS, "planes") if k not in view]
    planes = view.get("planes") if isinstance(view.get("planes"), Mapping) else {}
    missing += [array_key(p, k) for p in PLANES for k in KINDS if not isinstance(planes.get(p), Mapping)
                or k not in planes[p]]
    if missing:
        raise ConfigError(f"view: missing {', '.join(missing[:6])}{' …' if len(missing) > 6 else ''}")
    for p in PLANES:
        shapes = {np.shape(planes[p][k]) for k in KINDS}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ConfigError(f"view: the {p} arrays must be 2-D and of one shape, got {sorted(shapes)}")
    return dict(view)


def _title(view: Mapping[str, Any]) -> str:
    dice = view["dice"]
    table, again = dice.get("table") or {}, dice.get("recomputed") or {}
    budget = f" {view['budget_key']}={_budget(view['budget'])}" if view.get("budget_key") else ""
    text = (f"{view['model']} · {view['attack']}{budget} · case {view['case']} · {view['region']} Dice "
            f"{_num(table.get('clean'))} → {_num(table.get('adversarial'))}")
    if not _same(table, again):
        text += (f" (recomputed on the model grid: {_num(again.get('clean'))} → "
                 f"{_num(again.get('adversarial'))})")
    return text + f" · perturbation amplified ×{view['amplification']:g}"


def _budget(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _num(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _same(a: Mapping[str, Any], b: Mapping[str, Any], tol: float = 1e-6) -> bool:
    return all(a.get(k) is not None and b.get(k) is not None and abs(float(a[k]) - float(b[k])) <= tol
               for k in ("clean", "adversarial"))


def view_figure(view: Mapping[str, Any]) -> Figure:
    """The worst case of one attack cell: rows axial, coronal, sagittal; columns the clean image, the adversarial
    image, the perturbation × amplification (diverging, colour bar in 1/255 units), and the reference, clean and
    adversarial predictions over the clean (adversarial) image; the label key below."""
    v = check_view(view)
    spacing, k = [float(s) for s in v["spacing"]], float(v["amplification"])
    with rc_context(DARK):
        fig = new_figure((2.3 * len(KINDS) + 1.2, 2.4 * len(PLANES) + 1.2))
        axes = fig.subplots(len(PLANES), len(KINDS), squeeze=False)
        bar = None
        for r, plane in enumerate(PLANES):
            arrays = v["planes"][plane]
            vmax = grey_max(arrays["clean"])
            for c, kind in enumerate(KINDS):
                ax = axes[r, c]
                if kind == "perturbation":
                    bar = ax.imshow(display(np.asarray(arrays[kind], dtype=np.float64) * 255.0 * k, plane),
                                    cmap=PERTURBATION_CMAP, vmin=-PERTURBATION_LIMIT_255, vmax=PERTURBATION_LIMIT_255,
                                    interpolation="nearest", aspect=aspect(spacing, plane))
                    _clean_axes(ax)
                else:
                    under = arrays["adversarial" if kind in ("adversarial", "adversarial_prediction") else "clean"]
                    draw_image(ax, under, plane, spacing, vmax)
                    if kind in LABEL_KINDS:
                        draw_labels(ax, arrays[kind], plane, spacing)
                if r == 0:
                    ax.set_title(COLUMN_TITLES[kind] + (f" ×{k:g}" if kind == "perturbation" else ""), fontsize=9)
            axis = PLANE_AXIS[plane]
            axes[r, 0].set_ylabel(f"{plane} {AXIS_NAMES[axis]}={v['slices'][plane]}", fontsize=9)
        fig.colorbar(bar, ax=axes[:, KINDS.index("perturbation")], shrink=0.6, location="bottom",
                     label=f"perturbation ×{k:g} (1/255)")
        fig.suptitle(f"{_title(v)}\n{v['channel']} channel; L∞ {float(v['linf_255']):.2f}/255", fontsize=10)
        label_key(fig)
    return fig


def view_plot(view: Mapping[str, Any], path: str | Path) -> Path:
    """Save :func:`view_figure` of ``view`` as a PNG at ``path`` (atomically)."""
    out = check_png_path(path, "view_plot")
    return save_png(view_figure(view), out)


def load_view(path: str | Path) -> dict[str, Any]:
    """A view from its ``.npz`` and the JSON record beside it (same name, ``.json``)."""
    npz = Path(path)
    if npz.suffix.lower() != ".npz":
        raise ConfigError(f"load_view: path must be a .npz file, got {str(path)!r}")
    try:
        record = json.loads(npz.with_suffix(".json").read_text(encoding="utf-8"))
        with np.load(npz) as data:
            arrays = {k: np.array(data[k]) for k in data.files}
    except (OSError, ValueError) as err:
        raise ConfigError(f"load_view: cannot read {npz} or its .json: {str(err).splitlines()[0]}") from None
    if not isinstance(record, dict):
        raise ConfigError(f"load_view: {npz.with_suffix('.json')} does not hold a JSON object")
    planes = {p: {k: arrays[array_key(p, k)] for k in KINDS if array_key(p, k) in arrays} for p in PLANES}
    return check_view({**record, "planes": planes})


# -- synthetic cases --------------------------------------------------------------------------------------------
CaseRow = tuple[str, Mapping[str, np.ndarray], np.ndarray]
"""(case id, modality → RAS volume, canonical label volume)."""


def _flair(names: Sequence[str]) -> str:
    return next((n for n in names if n.lower() == "flair"), names[0])


def cases_figure(rows: Sequence[CaseRow], spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> Figure:
    """One row per case: an axial slice through the tumour's centre of every modality, then the labels on FLAIR;
    the label key below."""
    if not rows:
        raise ConfigError("cases_figure: no cases to draw")
    names = list(rows[0][1])
    if not names:
        raise ConfigError("cases_figure: a case has no images")
    columns = [*names, "labels"]
    with rc_context(DARK):
        fig = new_figure((2.4 * len(columns), 2.5 * len(rows) + 0.6))
        axes = fig.subplots(len(rows), len(columns), squeeze=False)
        for r, (cid, images, label) in enumerate(rows):
            missing = [n for n in names if n not in images]
            if missing:
                raise ConfigError(f"cases_figure: case {cid} lacks image(s) {missing}")
            z = tumour_slice(label, PLANE_AXIS["axial"])
            for c, name in enumerate(columns):
                ax = axes[r, c]
                slab = take(images[_flair(names) if name == "labels" else name], "axial", z)
                draw_image(ax, slab, "axial", spacing, grey_max(slab))
                if name == "labels":
                    draw_labels(ax, take(label, "axial", z), "axial", spacing)
                title = "labels on FLAIR" if name == "labels" else name.upper()
                ax.set_title(f"{cid} z={z}  {title}" if c == 0 else title, fontsize=8)
        label_key(fig)
    return fig


def cases_plot(rows: Sequence[CaseRow], path: str | Path, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> Path:
    """Save :func:`cases_figure` as a PNG at ``path`` (atomically)."""
    out = check_png_path(path, "cases_plot")
    return save_png(cases_figure(rows, spacing), out, dpi=110)
