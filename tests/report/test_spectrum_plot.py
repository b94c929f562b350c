"""Spectrum and band figures: valid PNGs, atomic saves, one-line errors for bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from volrob.analysis import spectrum_table
from volrob.errors import ConfigError
from volrob.report import band_bar_plot, spectrum_plot


def _spectra() -> pd.DataFrame:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 1, 6, 6, 6, generator=g, dtype=torch.float64)
    i = torch.arange(6, dtype=torch.float64)
    smooth = torch.cos(torch.pi * (2 * i + 1) / 12)[None, None, :, None, None].expand(1, 1, 6, 6, 6).clone()
    return spectrum_table({"PGD": noise, "VAFA": smooth + 0.01 * noise[:1]}, bins=6)


def _bands() -> pd.DataFrame:
    return pd.DataFrame({"name": ["PGD", "PGD", "VAFA", "VAFA", "VAFA"],
                         "band": ["low", "high", "low", "high", "high"],
                         "value": [0.6, 0.8, 0.3, 0.9, 0.7]})


def _check_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.ptp(image[..., :3]) > 0  # something was drawn


def test_spectrum_plot_writes_a_png(tmp_path: Path) -> None:
    out = spectrum_plot(_spectra(), tmp_path / "sub" / "spectrum.png", title="PGD vs VAFA")
    assert out == tmp_path / "sub" / "spectrum.png"
    _check_png(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["spectrum.png"]


def test_band_bar_plot_writes_a_png_and_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "bands.png"
    band_bar_plot(_bands(), target)
    first = target.read_bytes()
    band_bar_plot(_bands(), target, ylabel="Dice drop", title="Dice drop per band")
    _check_png(target)
    assert target.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bands.png"]


@pytest.mark.parametrize("draw", [lambda p: spectrum_plot(_spectra(), p), lambda p: band_bar_plot(_bands(), p)])
def test_failed_save_leaves_the_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           draw: Callable[[Path], Path]) -> None:
    target = tmp_path / "figure.png"
    target.write_bytes(b"previous figure")

    def broken_savefig(self: Figure, fname: object, **kwargs: object) -> None:
        Path(str(fname)).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        draw(target)
    assert target.read_bytes() == b"previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]


def test_bad_plot_inputs(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    cases = [
        (lambda: spectrum_plot(_spectra().to_dict(), png), "DataFrame"),
        (lambda: spectrum_plot(_spectra().drop(columns="bin_hi"), png), "bin_hi"),
        (lambda: spectrum_plot(_spectra().iloc[:0], png), "no rows"),
        (lambda: spectrum_plot(_spectra(), tmp_path / "x.jpg"), "png"),
        (lambda: band_bar_plot(_bands().drop(columns="band"), png), "band"),
        (lambda: band_bar_plot(_bands().assign(value="high"), png), "value"),
        (lambda: band_bar_plot(_bands(), 3), "png"),
    ]
    for call, word in cases:
        with pytest.raises(ConfigError, match=word) as err:
            call()
        assert "\n" not in str(err.value)
    assert not png.exists()
