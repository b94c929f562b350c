"""Saving figures: atomic PNG writes and the note (e.g. synthetic data) every figure saved inside figure_note gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from volrob.errors import ConfigError
from volrob.report.figure import SYNTHETIC_NOTE, check_png_path, figure_note, new_figure, save_png


def _fig(title: str | None = None):
    fig = new_figure((3, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    if title is not None:
        fig.suptitle(title, color="white")
    return fig


def test_note_goes_above_the_title_and_keeps_its_style(tmp_path: Path) -> None:
    titled, bare, outside = _fig("Dice vs budget"), _fig(), _fig("plain")
    with figure_note(SYNTHETIC_NOTE):
        save_png(titled, tmp_path / "a.png")
        save_png(titled, tmp_path / "a.png")  # saved twice: noted once
        save_png(bare, tmp_path / "b.png")
    save_png(outside, tmp_path / "c.png")
    assert titled._suptitle.get_text() == f"{SYNTHETIC_NOTE}\nDice vs budget"
    assert titled._suptitle.get_color() == "white"
    assert bare._suptitle.get_text() == SYNTHETIC_NOTE
    assert outside._suptitle.get_text() == "plain"  # the note ends with its block
    assert all((tmp_path / n).read_bytes().startswith(b"\x89PNG") for n in ("a.png", "b.png", "c.png"))


def test_nested_notes_and_none(tmp_path: Path) -> None:
    inner, after = _fig("t"), _fig("u")
    with figure_note("outer"):
        with figure_note(None):
            save_png(inner, tmp_path / "x.png")
        save_png(after, tmp_path / "y.png")
    assert inner._suptitle.get_text() == "t" and after._suptitle.get_text() == "outer\nu"


def test_bad_paths_and_failed_saves_keep_the_old_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="plot: path must be a .png file"):
        check_png_path(tmp_path / "a.jpg", "plot")
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")
    broken = _fig()
    broken.text(0.5, 0.5, "$\\badcommand$")  # mathtext that cannot be parsed fails while drawing
    with pytest.raises(ValueError):
        save_png(broken, target)
    assert target.read_bytes() == b"old"
