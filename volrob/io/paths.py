"""Paths as documents show them: relative to the working directory, never a machine's absolute path."""

from __future__ import annotations

from pathlib import Path


def shown_path(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies below it, else its file name alone."""
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.name
