"""Bare matplotlib figures (Agg canvas, no display, no global pyplot state) saved atomically as PNG.

Inside :func:`figure_note` every figure saved gets the note at the top of its title (e.g. that its data are
synthetic phantoms), so a PNG copied out of a report or a run folder still says it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from volrob.errors import ConfigError
from volrob.io.atomic import atomic_path


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure of ``size`` inches with a constrained layout, drawable without a display."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_png_path(path: str | Path, what: str) -> Path:
    """``path`` as a Path; ConfigError naming ``what`` unless it ends in ``.png``."""
    if not isinstance(path, (str, Path)) or Path(path).suffix.lower() != ".png":
        raise ConfigError(f"{what}: path must be a .png file, got {path!r}")
    return Path(path)


SYNTHETIC_NOTE = "SYNTHETIC DATA: volrob phantoms, not real scans"
_NOTE: ContextVar[str | None] = ContextVar("volrob_figure_note", default=None)


@contextmanager
def figure_note(note: str | None) -> Iterator[None]:
    """Within the block, :func:`save_png` puts ``note`` (None: nothing) above every figure's title."""
    token = _NOTE.set(note)
    try:
        yield
    finally:
        _NOTE.reset(token)


def _add_note(fig: Figure, note: str) -> None:
    title = getattr(fig, "_suptitle", None)  # keep an existing title's colour and size
    if title is not None and title.get_text():
        if not title.get_text().startswith(note):
            title.set_text(f"{note}\n{title.get_text()}")
    else:
        fig.suptitle(note, fontsize=9, color="#b03a2e", fontweight="bold")


def save_png(fig: Figure, path: Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (a failure leaves an existing file untouched), with the note of
    :func:`figure_note` if one is set."""
    note = _NOTE.get()
    if note:
        _add_note(fig, note)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
