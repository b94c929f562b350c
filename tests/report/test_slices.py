"""Brain slices (:mod:`volrob.report.slices`): anatomical display, the view figure's arrays, titles and label key,
loading a stored view, the synthetic-case overview, and bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from volrob.errors import ConfigError
from volrob.report.slices import (
    KINDS,
    PLANES,
    amplification,
    array_key,
    aspect,
    cases_figure,
    display,
    load_view,
    take,
    view_figure,
    view_plot,
)

SHAPE = {"axial": (6, 8), "coronal": (6, 5), "sagittal": (8, 5)}  # RAS volume (6, 8, 5)


def _view(**extra: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    planes = {}
    for p in PLANES:
        clean = rng.random(SHAPE[p]).astype(np.float32)
        delta = (rng.uniform(-4, 4, SHAPE[p]) / 255).astype(np.float32)
        planes[p] = {"clean": clean, "adversarial": np.clip(clean + delta, 0, 1), "perturbation": delta,
                     **{k: rng.integers(0, 4, SHAPE[p]).astype(np.uint8) for k in KINDS[3:]}}
    return {"case": "BraTS2021_00007", "cell": "unet__pgd__eps8__abcd1234", "model": "unet", "attack": "pgd",
            "budget_key": "eps", "budget": 8.0, "region": "WT", "channel": "flair", "linf_255": 4.0,
            "slices": {"axial": 2, "coronal": 3, "sagittal": 1}, "spacing": [1.0, 2.0, 3.0], "amplification": 50.0,
            "dice": {"table": {"clean": 0.91, "adversarial": 0.42}, "recomputed": {"clean": 0.91, "adversarial": 0.42}},
            "planes": planes, **extra}


def test_display_is_anatomical() -> None:
    volume = np.zeros((4, 5, 6))
    volume[3, 4, 2] = 1.0  # patient's right (high x), anterior (high y)
    shown = display(take(volume, "axial", 2), "axial")
    assert shown.shape == (5, 4) and shown[0, 0] == 1.0  # anterior at the top, the right on the left
    volume[:] = 0
    volume[3, 1, 5] = 1.0  # right, superior
    assert display(take(volume, "coronal", 1), "coronal")[0, 0] == 1.0  # superior at the top, the right on the left
    volume[:] = 0
    volume[0, 4, 5] = 1.0  # anterior, superior
    assert display(take(volume, "sagittal", 0), "sagittal")[0, 0] == 1.0  # superior at the top, anterior on the left
    assert [aspect((1.0, 2.0, 3.0), p) for p in PLANES] == [2.0, 3.0, 1.5]


def test_amplification_keeps_the_panel_in_range() -> None:
    assert [amplification(v) for v in (8.0, 4.0, 1.0, 0.0, 300.0)] == [20.0, 50.0, 200.0, 1.0, 1.0]


def test_view_figure_shows_the_view_arrays() -> None:
    view = _view()
    fig = view_figure(view)
    panels = fig.axes[:len(PLANES) * len(KINDS)]
    for r, plane in enumerate(PLANES):
        arrays = view["planes"][plane]
        for c, kind in enumerate(KINDS):
            images = panels[r * len(KINDS) + c].get_images()
            shown = [np.asarray(im.get_array()) for im in images]
            if kind == "perturbation":
                np.testing.assert_allclose(shown[0], display(arrays[kind] * 255.0 * 50.0, plane), rtol=1e-6)
                assert images[0].get_clim() == (-255.0, 255.0)
            else:
                base = "adversarial" if kind.startswith("adversarial") else "clean"
                np.testing.assert_array_equal(shown[0], display(arrays[base], plane))
                assert images[0].get_clim()[0] == 0.0
            if kind in KINDS[3:]:
                np.testing.assert_array_equal(shown[1], display(arrays[kind], plane))
            assert panels[r * len(KINDS) + c].get_aspect() == pytest.approx(aspect(view["spacing"], plane))
    clean = view["planes"]["axial"]["clean"]
    assert panels[0].get_images()[0].get_clim()[1] == pytest.approx(np.percentile(clean[clean > 0], 99.5))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["NCR", "ED", "ET"]
    title = fig.get_suptitle()
    assert all(word in title for word in ("unet", "pgd", "eps=8", "BraTS2021_00007", "0.910 → 0.420", "×50"))
    assert "recomputed" not in title


def test_a_dice_mismatch_is_shown() -> None:
    view = _view(dice={"table": {"clean": 0.91, "adversarial": 0.42}, "recomputed": {"clean": 0.91,
                                                                                     "adversarial": 0.5}})
    assert "recomputed on the model grid: 0.910 → 0.500" in view_figure(view).get_suptitle()


def test_plot_and_load_a_stored_view(tmp_path: Path) -> None:
    view = _view()
    buf = io.BytesIO()
    np.savez_compressed(buf, **{array_key(p, k): a for p, arrays in view["planes"].items() for k, a in arrays.items()})
    (tmp_path / "v.npz").write_bytes(buf.getvalue())
    (tmp_path / "v.json").write_text(json.dumps({k: v for k, v in view.items() if k != "planes"}))
    loaded = load_view(tmp_path / "v.npz")
    assert loaded["case"] == view["case"] and loaded["dice"] == view["dice"]
    for p in PLANES:
        for k in KINDS:
            np.testing.assert_array_equal(loaded["planes"][p][k], view["planes"][p][k])
    assert view_plot(loaded, tmp_path / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _one_line(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def test_bad_input(tmp_path: Path) -> None:
    view = _view()
    del view["case"]
    with pytest.raises(ConfigError) as err:
        view_figure(view)
    assert "missing case" in _one_line(err)
    view = _view()
    del view["planes"]["coronal"]["reference"]
    with pytest.raises(ConfigError) as err:
        view_figure(view)
    assert "coronal_reference" in _one_line(err)
    with pytest.raises(ConfigError) as err:
        view_plot(_view(), tmp_path / "v.jpg")
    assert ".png" in _one_line(err) and not (tmp_path / "v.jpg").exists()
    with pytest.raises(ConfigError) as err:
        load_view(tmp_path / "missing.npz")
    assert "missing.npz" in _one_line(err)
    with pytest.raises(ConfigError) as err:
        load_view(tmp_path / "v.json")
    assert ".npz" in _one_line(err)


def test_cases_figure() -> None:
    rng = np.random.default_rng(1)
    label = np.zeros((8, 8, 6), np.uint8)
    label[2:5, 2:5, 4] = 2
    label[3, 3, 4] = 3
    images = {m: rng.random((8, 8, 6)).astype(np.float32) for m in ("t1", "t1ce", "t2", "flair")}
    fig = cases_figure([("c0", images, label), ("c1", images, np.zeros_like(label))])
    panels = fig.axes
    assert panels[0].get_title() == "c0 z=4  T1" and panels[4].get_title() == "labels on FLAIR"
    assert panels[5].get_title() == "c1 z=3  T1"  # no tumour: the middle slice
    np.testing.assert_array_equal(panels[4].get_images()[0].get_array(), display(images["flair"][:, :, 4], "axial"))
    np.testing.assert_array_equal(panels[4].get_images()[1].get_array(), display(label[:, :, 4], "axial"))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["NCR", "ED", "ET"]
    with pytest.raises(ConfigError, match="no cases"):
        cases_figure([])
