"""A report page as one self-contained HTML file: styles inline, every figure embedded as a PNG data URI, no
script and nothing fetched, so it reads offline, in an archive or as an e-mail attachment."""

from __future__ import annotations

import base64
import html

from volrob.report.inline import is_number, to_html
from volrob.report.page import Block, CodeBlock, Details, FigureBlock, Gallery, Page, Paragraph, TableBlock

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#fafbfc;
line-height:1.45}
header{background:#1f3b57;color:#fff;padding:1.2em 2em}header h1{margin:0 0 .2em;font-size:1.6em}
header p{margin:0;opacity:.85}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #d8dee4;padding:.5em 2em;z-index:1;
font-size:.92em}nav a{margin-right:1.2em;color:#1f5f99;text-decoration:none}
main{max-width:1200px;margin:0 auto;padding:0 2em 3em}
section{background:#fff;border:1px solid #e1e6eb;border-radius:6px;margin:1.4em 0;padding:.4em 1.4em 1.2em}
h2{border-bottom:2px solid #e1e6eb;padding-bottom:.2em}h3{margin:1.2em 0 .4em;font-size:1.05em}
.banner{background:#fff3cd;border:1px solid #e0c36b;color:#5c4400;padding:.8em 1.2em;border-radius:6px;
margin:1.2em 0;font-weight:600}
.note{color:#4a5560;font-size:.93em}.warning{background:#fdecea;border-left:4px solid #c0392b;padding:.5em .8em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #e1e6eb}
figcaption{font-size:.9em;color:#4a5560;margin-top:.3em}
table{border-collapse:collapse;font-size:.88em;margin:.4em 0 .2em;display:block;overflow-x:auto}
th,td{border:1px solid #d8dee4;padding:.25em .6em;text-align:left;white-space:nowrap}
td.text{white-space:normal;min-width:16em;max-width:42em}
th{background:#f0f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.gallery{display:flex;flex-wrap:wrap;gap:1em}.gallery figure{flex:1 1 420px;max-width:560px}
.table-title{font-weight:600;margin-top:1em}.files{font-size:.85em;color:#4a5560}
pre{background:#f4f6f8;border:1px solid #e1e6eb;padding:.8em;overflow-x:auto;font-size:.85em}
details{margin:.6em 0}summary{cursor:pointer;color:#1f5f99}
"""


def _figure(b: FigureBlock, files: str) -> str:
    data = base64.b64encode(b.path.read_bytes()).decode("ascii")
    caption = f"<strong>{to_html(b.title)}</strong>"
    if b.caption:
        caption += f" {to_html(b.caption)}"
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.title)}">'
            f'<figcaption>{caption} <span class="files">({html.escape(files)}/{html.escape(b.path.name)})</span>'
            "</figcaption></figure>")


LONG = 60
"""Text cells longer than this wrap instead of widening the table."""


def _cell(value: object) -> str:
    text = str(value)
    cls = ' class="num"' if is_number(text) else ' class="text"' if len(text) > LONG else ""
    return f"<td{cls}>{to_html(text)}</td>"


def _table(b: TableBlock, files: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in b.frame.columns)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in b.frame.itertuples(index=False))
    where = f' <span class="files">({html.escape(files)}/{html.escape(b.csv.name)})</span>' if b.csv else ""
    caption = f'<p class="note">{to_html(b.caption)}</p>' if b.caption else ""
    return (f'<p class="table-title">{to_html(b.title)}{where}</p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{caption}")


def _block(b: Block, files: str) -> str:
    if isinstance(b, Paragraph):
        cls = "" if b.kind == "text" else f' class="{b.kind}"'
        return f"<p{cls}>{to_html(b.text)}</p>"
    if isinstance(b, FigureBlock):
        return _figure(b, files)
    if isinstance(b, TableBlock):
        return _table(b, files)
    if isinstance(b, CodeBlock):
        title = f"<h3>{to_html(b.title)}</h3>" if b.title else ""
        return f"{title}<pre>{html.escape(b.text)}</pre>"
    if isinstance(b, Gallery):
        return '<div class="gallery">' + "".join(_figure(f, files) for f in b.figures) + "</div>"
    if isinstance(b, Details):
        inner = "".join(_block(x, files) for x in b.blocks)
        return f"<details><summary>{to_html(b.summary)}</summary>{inner}</details>"
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_html(page: Page, *, files: str) -> str:
    """The page as one HTML document; ``files`` names the folder of PNG/CSV copies (shown beside each item)."""
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in page.sections)
    banner = f'<div class="banner" role="alert">{to_html(page.banner)}</div>' if page.banner else ""
    body = "".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>'
                   + "".join(_block(b, files) for b in s.blocks) + "</section>" for s in page.sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(page.title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{html.escape(page.title)}</h1><p>{to_html(page.subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{banner}{body}</main></body></html>\n")
