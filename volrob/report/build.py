"""``volrob report RESULTS_DIR -o report.html``: one self-contained page of a study or run, made from its own tables
and records only, with every figure as PNG and every table as CSV in ``<page>_files/`` beside it. ``-o page.md``
writes the same page as Markdown linking those files instead (for documents kept in a repository). Sections of
stages that did not run are left out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from volrob import __version__
from volrob.errors import ConfigError
from volrob.io import atomic_write_text
from volrob.report.assets import Assets
from volrob.report.figure import SYNTHETIC_NOTE as SYNTHETIC_FIGURE_NOTE
from volrob.report.figure import figure_note
from volrob.report.html_page import render_html
from volrob.report.markdown_page import render_markdown
from volrob.report.page import Page, Section
from volrob.report.results_dir import load_results
from volrob.report.sections import (
    clean,
    defences,
    failures,
    overview,
    queries,
    training,
    transfer,
    universal,
    whitebox,
    worst,
)
from volrob.report.sections.context import SYNTHETIC_NOTE, Context

SECTIONS: tuple[Callable[[Context], Section | None], ...] = (
    overview.build, training.build, clean.build, whitebox.build, transfer.build, universal.build, defences.build,
    queries.build, worst.build, failures.build)
"""Section builders in page order."""


FORMATS = (".html", ".md")


@dataclass
class Report:
    """What a report wrote: the page, the folder of its files and its sections' ids."""

    page: Path
    files: Path
    sections: list[str]


def build_report(results_dir: str | Path, output: str | Path, *, title: str | None = None) -> Report:
    """Write the report of ``results_dir`` to ``output`` (.html or .md) and its files beside it (module doc)."""
    out = Path(output)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"-o/--out: the page must end in .html or .md, got {str(out)!r}")
    if out.is_dir():
        raise ConfigError(f"-o/--out: {str(out)!r} is a folder")
    results = load_results(results_dir)
    assets = Assets(out.with_name(f"{out.stem}_files"))
    try:
        ctx = Context(results, assets)
        with figure_note(SYNTHETIC_FIGURE_NOTE if results.synthetic else None):
            sections = [s for s in (build(ctx) for build in SECTIONS) if s is not None]
        page = Page(title or f"Robustness report: {results.name}",
                    f"volrob {__version__} · seed {results.seed} · made from `{results.root.name}` by "
                    "`volrob report`", sections, SYNTHETIC_NOTE if results.synthetic else None)
        text = (render_html(page, files=assets.folder.name) if out.suffix.lower() == ".html"
                else render_markdown(page, where=out, locate=assets.final))
    except BaseException:
        assets.discard()
        raise
    assets.commit()
    atomic_write_text(out, text)
    return Report(out, assets.folder, [s.id for s in sections])
