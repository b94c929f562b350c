"""Transfer heatmaps: both panels draw the matrices' values (negative drops unclipped, on a scale centred on 0),
clean Dice under each target, a flag for a target with almost no clean Dice, titles with attack, budget and n;
atomic save; one-line errors."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from volrob.errors import ConfigError, DataError
from volrob.evaluation.transfer_matrix import MATRIX_COLUMNS
from volrob.report import figure
from volrob.report.heatmap import target_clean, transfer_figure, transfer_plot

SOURCES = ["unet", "unetr"]
TARGETS = ["unet", "unetr", "umamba"]
CLEAN = {"unet": 0.812, "unetr": 0.7, "umamba": 0.058}
DROP = {("unet", "unet"): 0.3, ("unet", "unetr"): 0.1, ("unet", "umamba"): 0.05,
        ("unetr", "unet"): -0.08, ("unetr", "unetr"): 0.4, ("unetr", "umamba"): 0.058}
RATE = {("unet", "unet"): 0.67, ("unet", "unetr"): 0.0, ("unet", "umamba"): 1.0,
        ("unetr", "unet"): 0.0, ("unetr", "unetr"): 1.0, ("unetr", "umamba"): 1.0}


def _group(attack: str = "pgd", budget: float = 8.0) -> pd.DataFrame:
    rows = [{"attack": attack, "budget_key": "eps", "budget": budget, "source": s, "model": t, "white_box": s == t,
             "region": "WT", "n": 3, "clean_dice": CLEAN[t], "adversarial_dice": CLEAN[t] - DROP[(s, t)],
             "dice_drop": DROP[(s, t)], "success_rate": RATE[(s, t)], "transfer_ratio": np.nan}
            for s in SOURCES for t in TARGETS]
    return pd.DataFrame(rows, columns=MATRIX_COLUMNS)


def _figure(g: pd.DataFrame | None = None, **kw: object):
    args = {"sources": SOURCES, "targets": TARGETS, "region": "WT", "success_drop": 0.5, **kw}
    return transfer_figure(_group() if g is None else g, **args)


def _image(ax) -> AxesImage:
    return next(a for a in ax.get_children() if isinstance(a, AxesImage))


def test_panels_draw_the_matrix_values_negative_drops_included() -> None:
    fig = _figure()
    left, right = fig.axes[0], fig.axes[1]
    drop, rate = _image(left), _image(right)
    want_drop = np.array([[DROP[(s, t)] for t in TARGETS] for s in SOURCES])
    np.testing.assert_allclose(drop.get_array().filled(np.nan), want_drop)
    np.testing.assert_allclose(rate.get_array().filled(np.nan), [[RATE[(s, t)] for t in TARGETS] for s in SOURCES])
    assert drop.get_clim() == (-0.4, 0.4) and rate.get_clim() == (0.0, 1.0)  # symmetric, from the largest |drop|
    assert drop.norm(-0.08) < drop.norm(0.0) == 0.5  # an improvement is below the centre, not clipped to 0
    texts = [t.get_text() for t in left.texts]
    assert "-0.080" in texts and "0.300" in texts and "67%" in [t.get_text() for t in right.texts]
    bold = [t.get_text() for t in left.texts if t.get_fontweight() == "bold"]
    assert bold == ["0.300", "0.400"]  # the white-box diagonal


def test_clean_dice_under_each_target_and_a_flag_for_a_near_empty_one() -> None:
    fig = _figure()
    for ax in fig.axes[:2]:
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == ["unet\nclean 0.812", "unetr\nclean 0.700", "umamba\nclean 0.058\n(clean<0.1)"]
    right = fig.axes[1]
    assert "share of cases whose" in right.get_title() and "fell by ≥ 50 % of its clean value" in right.get_title()
    hatched = [p for p in right.patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert [p.get_x() + 0.5 for p in hatched] == [2.0] and "clean Dice < 0.1" in right.get_xlabel()
    title = fig.get_suptitle()
    assert "pgd" in title and "eps=8" in title and "n = 3 cases" in title and "WT" in title


def test_small_drops_keep_a_minimum_scale_and_target_clean_is_the_case_weighted_mean() -> None:
    g = _group().assign(dice_drop=0.01)
    assert _image(_figure(g).axes[0]).get_clim() == (-0.05, 0.05)
    g = _group().assign(n=[3, 3, 3, 1, 1, 1], clean_dice=[0.8, 0.7, 0.1, 0.4, 0.3, 0.02])
    want = [(0.8 * 3 + 0.4) / 4, (0.7 * 3 + 0.3) / 4, (0.1 * 3 + 0.02) / 4]
    np.testing.assert_allclose(target_clean(g, TARGETS).to_numpy(), want)
    assert "n = 1–3 cases" in _figure(g).get_suptitle()


def test_missing_pairs_are_dashes_and_rows_follow_the_given_order() -> None:
    g = _group()
    g = g[~((g.source == "unetr") & (g.model == "umamba"))]
    fig = _figure(g, sources=["unetr", "unet"])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["unetr", "unet"]
    assert "–" in [t.get_text() for t in fig.axes[0].texts]


def test_png_written_and_readable(tmp_path: Path) -> None:
    path = transfer_plot(_group(), tmp_path / "h" / "pgd.png", sources=SOURCES, targets=TARGETS, region="WT",
                         success_drop=0.5)
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0.01


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.png"
    path.write_bytes(b"old")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(figure.Figure, "savefig", broken)
    with pytest.raises(RuntimeError):
        transfer_plot(_group(), path, sources=SOURCES, targets=TARGETS, region="WT", success_drop=0.5)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]


@pytest.mark.parametrize(("group", "kw", "error", "match"), [
    (lambda: _group().drop(columns="success_rate"), {}, ConfigError, r"matrices_group lacks .*'success_rate'"),
    (lambda: _group().iloc[:0], {}, DataError, "matrices_group has no rows"),
    (lambda: pd.concat([_group(), _group(budget=4.0)]), {}, ConfigError, "holds 2 attack settings"),
    (_group, {"region": "TC"}, ConfigError, "region 'TC'"),
    (_group, {"success_drop": 0}, ConfigError, "success_drop"),
    (_group, {"sources": "unet"}, ConfigError, "sources must be a non-empty list"),
    (_group, {"targets": []}, ConfigError, "targets must be a non-empty list"),
    (_group, {"sources": ["vit"]}, ConfigError, r"none of the sources \['vit'\]"),
    (lambda: pd.concat([_group(), _group()]), {}, DataError, "several rows for one"),
    (lambda: _group().assign(dice_drop="big"), {}, DataError, "'dice_drop'"),
    (lambda: [], {}, ConfigError, "matrices_group must be a pandas DataFrame"),
])
def test_bad_input(group, kw: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as err:
        _figure(group(), **kw)
    assert "\n" not in str(err.value)


def test_non_png_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"transfer_plot: path must be a \.png file"):
        transfer_plot(_group(), tmp_path / "a.jpg", sources=SOURCES, targets=TARGETS, region="WT", success_drop=0.5)
    assert not list(tmp_path.iterdir())
