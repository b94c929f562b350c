"""The clean-score and training-curve figures against their data: bar heights and error bars equal the summary's
means and intervals in region order, curves equal the logs, axes as promised, and bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volrob.errors import ConfigError, DataError
from volrob.report.clean_plot import clean_figure, clean_plot
from volrob.report.training_plot import training_figure, training_plot


def _summary() -> pd.DataFrame:
    rows = []
    for m, model in enumerate(("unet", "segresnet")):
        for r, region in enumerate(("ET", "WT", "TC")):  # not in the order the figure uses
            mean = 0.5 + 0.1 * m + 0.05 * r
            rows.append({"model": model, "region": region, "metric": "dice", "n": 4, "mean": mean,
                         "ci_low": mean - 0.02, "ci_high": mean + 0.03})
            rows.append({"model": model, "region": region, "metric": "hd95", "n": 4, "mean": 10.0 + r,
                         "ci_low": 9.0, "ci_high": 12.0 + r})
    return pd.DataFrame(rows)


def test_clean_bars_equal_the_summary() -> None:
    summary = _summary()
    fig = clean_figure(summary)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["TC", "WT", "ET"]
    containers = ax.containers
    bars = [c for c in containers if hasattr(c, "patches")]
    assert len(bars) == 2
    for bar, model in zip(bars, ("unet", "segresnet"), strict=True):
        want = summary[(summary["model"] == model) & (summary["metric"] == "dice")].set_index("region")
        heights = [p.get_height() for p in bar.patches]
        assert heights == pytest.approx(want.loc[["TC", "WT", "ET"], "mean"].to_list())
        assert bar.errorbar is not None
        segments = bar.errorbar.lines[2][0].get_segments()
        assert [s[0][1] for s in segments] == pytest.approx(want.loc[["TC", "WT", "ET"], "ci_low"].to_list())
        assert [s[1][1] for s in segments] == pytest.approx(want.loc[["TC", "WT", "ET"], "ci_high"].to_list())
    assert ax.get_ylim() == (0.0, 1.0) and "n = 4 cases" in ax.get_title()
    hd = clean_figure(summary, metric="hd95").axes[0]
    assert hd.get_ylim()[0] == 0.0 and hd.get_ylim()[1] > 12.0


def _log(epochs: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    val = [np.nan if e % 2 else rng.random() for e in range(1, epochs + 1)]
    return pd.DataFrame({"epoch": range(1, epochs + 1), "train_loss": rng.random(epochs) + 0.5,
                         "val_dice_mean": val})


def test_training_curves_equal_the_logs(tmp_path: Path) -> None:
    logs = {"unet": _log(6, 0), "unet_ft": _log(1, 1)}
    fig = training_figure(logs)
    loss, dice = fig.axes[:2]
    for line, (_, log) in zip(loss.get_lines(), logs.items(), strict=True):
        assert list(line.get_xdata()) == list(log["epoch"]) and line.get_marker() == "."
        assert np.allclose(line.get_ydata(), log["train_loss"])
    measured = logs["unet"].dropna()
    assert np.allclose(dice.get_lines()[0].get_ydata(), measured["val_dice_mean"])
    assert dice.get_ylim() == (0.0, 1.0) and loss.get_ylim()[0] == 0.0
    assert training_plot(logs, tmp_path / "t.png").read_bytes().startswith(b"\x89PNG")


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"clean_figure: summary lacks column\(s\) \['ci_low'\]"):
        clean_figure(_summary().drop(columns="ci_low"))
    with pytest.raises(DataError, match="no rows of metric 'nsd'"):
        clean_figure(_summary(), metric="nsd")
    with pytest.raises(ConfigError, match="clean_plot: path must be a .png file"):
        clean_plot(_summary(), tmp_path / "c.svg")
    with pytest.raises(ConfigError, match="training_figure: no training logs"):
        training_figure({})
    with pytest.raises(ConfigError, match=r"the log of 'u' lacks column\(s\) \['val_dice_mean'\]"):
        training_figure({"u": _log(2, 0).drop(columns="val_dice_mean")})
