"""A report page as Markdown, its figures and tables linked from the folder beside it (for documents kept in a
repository, where a page of embedded images would not diff)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from volrob.report.inline import is_number, to_markdown_cell
from volrob.report.page import Block, CodeBlock, Details, FigureBlock, Gallery, Page, Paragraph, TableBlock


def _table(b: TableBlock, link: Callable[[Path], str]) -> str:
    cols = [to_markdown_cell(str(c)) for c in b.frame.columns]
    numeric = [bool(len(b.frame)) and all(is_number(v) for v in b.frame[c]) for c in b.frame.columns]
    lines = [f"**{b.title}**" + (f" ([csv]({link(b.csv)}))" if b.csv else ""), "",
             "| " + " | ".join(cols) + " |", "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    lines += ["| " + " | ".join(to_markdown_cell(str(v)) for v in row) + " |"
              for row in b.frame.itertuples(index=False)]
    if b.caption:
        lines += ["", b.caption]
    return "\n".join(lines)


def _block(b: Block, link: Callable[[Path], str]) -> str:
    if isinstance(b, Paragraph):
        return f"> **Warning.** {b.text}" if b.kind == "warning" else b.text
    if isinstance(b, FigureBlock):
        return f"![{b.title}]({link(b.path)})\n\n*{b.title}.*" + (f" {b.caption}" if b.caption else "")
    if isinstance(b, TableBlock):
        return _table(b, link)
    if isinstance(b, CodeBlock):
        return (f"**{b.title}**\n\n" if b.title else "") + f"```\n{b.text.rstrip()}\n```"
    if isinstance(b, Gallery):
        return "\n\n".join(_block(f, link) for f in b.figures)
    if isinstance(b, Details):
        inner = "\n\n".join(_block(x, link) for x in b.blocks)
        return f"<details><summary>{b.summary}</summary>\n\n{inner}\n\n</details>"
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_markdown(page: Page, *, where: Path, locate: Callable[[Path], Path]) -> str:
    """The page as Markdown to be written at ``where``; ``locate`` maps a staged file to its final path."""

    def link(path: Path) -> str:
        return Path(os.path.relpath(locate(path), where.parent)).as_posix()

    parts = [f"# {page.title}", page.subtitle]
    if page.banner:
        parts.append(f"> **{page.banner}**")
    for s in page.sections:
        parts.append(f"## {s.title}")
        parts += [_block(b, link) for b in s.blocks]
    return "\n\n".join(parts) + "\n"
