"""The light inline markup of report text: ``code`` in backticks and **bold**, to HTML (escaped) or Markdown."""

from __future__ import annotations

import html
import re

_TOKEN = re.compile(r"(`[^`]+`|\*\*[^*]+\*\*)")
NUMBER = re.compile(r"^[−+-]?(\d[\d,]*(\.\d+)?(e[−+-]?\d+)?%?|< 0\.001|–)( \[.*\])?$")
"""A table cell that holds one number (optionally with an interval or a percent sign), or a dash for none."""


def is_number(text: str) -> bool:
    """Whether a table cell reads as a number (right-aligned by both renderers)."""
    return bool(NUMBER.match(str(text)))


def to_html(text: str) -> str:
    """``text`` escaped for HTML, with backticks as <code> and double stars as <strong>."""
    out = []
    for part in _TOKEN.split(text):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        elif part.startswith("**") and part.endswith("**") and len(part) > 3:
            out.append(f"<strong>{html.escape(part[2:-2])}</strong>")
        else:
            out.append(html.escape(part))
    return "".join(out)


def to_markdown_cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell (pipes escaped, one line)."""
    return str(text).replace("|", "\\|").replace("\n", " ")
