"""Spectrum and band figures: the drawn values and titles (attack, budget, source, n; the white-box bar marked),
valid PNGs, atomic saves, one-line errors for bad input."""

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
from volrob.errors import ConfigError, DataError
from volrob.report import band_bar_figure, band_bar_plot, spectrum_figure, spectrum_plot


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
        (lambda: band_bar_plot(_bands().assign(white_box="?"), png), "white_box"),
    ]
    for call, word in cases:
        with pytest.raises((ConfigError, DataError), match=word) as err:
            call()
        assert "\n" not in str(err.value)
    assert not png.exists()


def test_band_bars_are_the_mean_drops_with_a_titled_legend() -> None:
    table = pd.DataFrame({"name": ["unet", "unet", "vit", "vit"], "band": ["low", "high", "low", "high"],
                          "value": [0.2, -0.03, 0.05, 0.01], "white_box": [True, True, False, False]})
    ax = band_bar_figure(table, attack="pgd", budget="eps=8", source="unet", n=3).axes[0]
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "scored model"
    assert [t.get_text() for t in legend.get_texts()] == ["unet (white-box)", "vit"]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [0.2, -0.03, 0.05, 0.01]  # a negative drop stays negative
    assert " ".join(ax.get_title().split()) == ("WT Dice drop per frequency band: pgd, eps=8, crafted on unet, "
                                                "n = 3 cases")
    assert "drop" in ax.get_ylabel()
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in ax.get_lines())  # the zero line
    averaged = band_bar_figure(_bands(), source="VAFA", n=[2, 3]).axes[0]
    assert [p.get_height() for p in averaged.patches] == pytest.approx([0.6, 0.8, 0.3, 0.8])
    assert [t.get_text() for t in averaged.get_legend().get_texts()] == ["PGD", "VAFA (white-box)"]
    assert averaged.get_title().endswith("crafted on VAFA, n = 2–3 cases")


def test_spectrum_title_gets_n_and_the_legend_names_perturbations() -> None:
    ax = spectrum_figure(_spectra(), title="spectra", n=4).axes[0]
    assert ax.get_title() == "spectra, n = 4 cases" and ax.get_legend().get_title().get_text() == "perturbation"
    assert spectrum_figure(_spectra()).axes[0].get_title() == "DCT energy spectrum of the perturbations"
