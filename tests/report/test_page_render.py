"""The report's document model rendered to HTML and Markdown, and the files beside the page."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volrob.report.assets import Assets, display, fmt, fmt_p, slug
from volrob.report.figure import new_figure, save_png
from volrob.report.html_page import render_html
from volrob.report.inline import is_number
from volrob.report.markdown_page import render_markdown
from volrob.report.page import CodeBlock, Details, Gallery, Page, Paragraph, Section, figures


def _png(path: Path) -> Path:
    fig = new_figure((2, 2))
    fig.add_subplot().plot([0, 1], [0, 1])
    return save_png(fig, path)


def _page(assets: Assets) -> Page:
    fig = assets.figure("a figure", _png, "A <figure>", "with `code` & **bold**")
    table = assets.table("t", pd.DataFrame({"model": ["u<b>"], "dice": [0.81234]}), "Scores")
    second = assets.figure("a figure", _png, "Second")
    folded = Details("More", [Gallery([second]), CodeBlock("key: <value>", "Config")])
    return Page("Report <1>", "sub `x`", [Section("one", "One", [Paragraph("Hello <world> `a<b`"), fig, table]),
                                         Section("two", "Two", [Paragraph("careful", "warning"), folded])],
                banner="synthetic data")


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    assets = Assets(tmp_path / "r_files")
    page = _page(assets)
    text = render_html(page, files="r_files")
    assert "<script" not in text and "&lt;world&gt;" in text and "<code>a&lt;b</code>" in text
    assert "<strong>bold</strong>" in text and "Report &lt;1&gt;" in text
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) == len(figures([b for s in page.sections for b in s.blocks])) == 2
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not re.search(r'(src|href)="(?!data:|#)', text)  # nothing fetched, only in-page links
    assert '<section id="one">' in text and '<a href="#two">Two</a>' in text
    assert '<td class="num">0.812</td>' in text and "<td>u&lt;b&gt;</td>" in text  # numbers right-aligned
    assert 'class="banner"' in text and '<details><summary>More</summary><div class="gallery"><figure>' in text


def test_markdown_links_the_committed_files(tmp_path: Path) -> None:
    assets = Assets(tmp_path / "out" / "r_files")
    page = _page(assets)
    md = tmp_path / "doc" / "r.md"
    md.parent.mkdir()
    text = render_markdown(page, where=md, locate=assets.final)
    assets.commit()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all((md.parent / link).is_file() for link in links)
    assert "| model | dice |\n| --- | ---: |" in text and "| u<b> | 0.812 |" in text  # numbers right-aligned
    assert "> **Warning.** careful" in text and text.startswith("# Report <1>")


def test_assets_names_commit_and_discard(tmp_path: Path) -> None:
    folder = tmp_path / "r_files"
    first = Assets(folder)
    a, b = first.figure("x y", _png, "A"), first.figure("x y", _png, "B")
    assert (a.path.name, b.path.name) == ("x-y.png", "x-y-2.png")
    assert not folder.exists()  # nothing visible before the commit
    first.commit()
    assert sorted(p.name for p in folder.iterdir()) == ["x-y-2.png", "x-y.png"]
    second = Assets(folder)
    second.figure("z", _png, "Z")
    second.discard()  # a failed report leaves the earlier files as they were
    assert sorted(p.name for p in folder.iterdir()) == ["x-y-2.png", "x-y.png"]
    third = Assets(folder)
    third.figure("z", _png, "Z")
    third.commit()
    assert [p.name for p in folder.iterdir()] == ["z.png"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.parametrize(("text", "number"), [
    ("0.812", True), ("-0.000", True), ("+0.009 [+0.006, +0.011]", True), ("12%", True), ("< 0.001", True),
    ("–", True), ("1e-05", True), ("1,024", True), ("2 min 08 s", False), ("1.6.1", False), ("eps=8", False),
    ("unet", False), ("", False)])
def test_numbers_are_told_from_text(text: str, number: bool) -> None:
    assert is_number(text) is number


def test_formatting() -> None:
    assert slug("pgd eps=8 / unet") == "pgd-eps-8-unet" and slug("///") == "item"
    assert (fmt(0.12345), fmt(3), fmt(np.nan), fmt(None), fmt(True), fmt("a")) == ("0.123", "3", "–", "–", "yes", "a")
    assert (fmt_p(0.0004), fmt_p(0.04567), fmt_p(float("nan"))) == ("< 0.001", "0.0457", "–")
    shown = display(pd.DataFrame({"a": [0.5], "b": [0.25]}), {"b": ".0%"}, names={"a": "A"})
    assert shown.to_dict("records") == [{"A": "0.500", "b": "25%"}]


@pytest.mark.parametrize("block", [object()])
def test_unknown_block_is_refused(block: object, tmp_path: Path) -> None:
    page = Page("t", "s", [Section("x", "X", [block])])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="unknown report block"):
        render_html(page, files="f")
    with pytest.raises(TypeError, match="unknown report block"):
        render_markdown(page, where=tmp_path / "a.md", locate=lambda p: p)
