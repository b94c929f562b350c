"""The document model of a report: a page of sections, each a list of blocks (paragraphs, figures, tables, code and
folded details). One model, two renderers: a self-contained HTML page (:mod:`volrob.report.html_page`) and Markdown
(:mod:`volrob.report.markdown_page`), so a figure or table is made once whatever the format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import pandas as pd


@dataclass(frozen=True)
class Paragraph:
    """Text with light inline markup (``code`` in backticks, **bold**); ``kind``: text, note or warning."""

    text: str
    kind: str = "text"


@dataclass(frozen=True)
class FigureBlock:
    """A PNG written beside the page, with what it shows."""

    path: Path
    title: str
    caption: str = ""


@dataclass(frozen=True)
class TableBlock:
    """A table: ``frame`` is what the page shows (formatted strings); ``csv`` the raw numbers written beside."""

    frame: pd.DataFrame
    csv: Path | None
    title: str
    caption: str = ""


@dataclass(frozen=True)
class CodeBlock:
    """Preformatted text (a configuration, a command)."""

    text: str
    title: str = ""


@dataclass(frozen=True)
class Gallery:
    """Figures of the same kind shown side by side where the page is wide enough."""

    figures: list[FigureBlock]


@dataclass(frozen=True)
class Details:
    """Blocks folded under a one-line summary (open on demand)."""

    summary: str
    blocks: list[Block]


Block = Union[Paragraph, FigureBlock, TableBlock, CodeBlock, Gallery, Details]  # noqa: UP007 (a runtime alias on 3.10)


@dataclass
class Section:
    """One part of the report; ``id`` is its anchor (and what the browser test looks for)."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Page:
    """The whole report."""

    title: str
    subtitle: str
    sections: list[Section]
    banner: str | None = None
    """A warning shown above everything (e.g. that the data are synthetic phantoms)."""


def figures(blocks: list[Block]) -> list[FigureBlock]:
    """Every figure of ``blocks``, folded ones included, in order."""
    out: list[FigureBlock] = []
    for b in blocks:
        if isinstance(b, FigureBlock):
            out.append(b)
        elif isinstance(b, Gallery):
            out += b.figures
        elif isinstance(b, Details):
            out += figures(b.blocks)
    return out
