"""Transfer heatmaps: a readable PNG, NaN cells allowed, atomic save, bad input."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from volrob.errors import ConfigError
from volrob.report import figure
from volrob.report.heatmap import transfer_heatmap


def _frame(value: float = 0.3) -> pd.DataFrame:
    return pd.DataFrame([[value, 0.1, np.nan], [0.05, 0.4, 0.2]], index=["unet", "unetr"],
                        columns=["unet", "unetr", "umamba"])


def test_png_written_and_readable(tmp_path: Path) -> None:
    path = transfer_heatmap([(_frame(), "drop", "Dice drop"), (_frame(0.5), "success", "success rate")],
                            tmp_path / "h" / "pgd.png", title="pgd eps=8")
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0.01


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.png"
    path.write_bytes(b"old")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(figure.Figure, "savefig", broken)
    with pytest.raises(RuntimeError):
        transfer_heatmap([(_frame(), "drop", "Dice drop")], path, title="t")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]


@pytest.mark.parametrize(("panels", "path", "match"), [
    ([], "a.png", "no panels"),
    ([(pd.DataFrame(), "x", "Dice drop")], "a.png", "has no values"),
    ([(_frame(), "x", "Dice drop")], "a.jpg", r"must be a \.png file"),
])
def test_bad_input(tmp_path: Path, panels: list, path: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        transfer_heatmap(panels, tmp_path / path, title="t")
