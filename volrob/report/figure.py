"""Bare matplotlib figures (Agg canvas, no display, no global pyplot state) saved atomically as PNG."""

from __future__ import annotations

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


def save_png(fig: Figure, path: Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (a failure leaves an existing file untouched)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
