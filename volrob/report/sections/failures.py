"""Failures: units of work that could not be computed, with the reason (a rerun retries them)."""

from __future__ import annotations

import pandas as pd

from volrob.report.page import Paragraph, Section
from volrob.report.sections.context import Context
from volrob.report.sections.overview import STAGE_TITLES


def build(ctx: Context) -> Section | None:
    """None when nothing failed."""
    frames = []
    for run in ctx.results.runs.values():
        failures = run.table("failures.csv")
        if failures is not None and not failures.empty:
            frames.append(failures.assign(stage=STAGE_TITLES.get(run.role, run.role)))
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    return Section("failures", "Failures", [
        Paragraph(f"{len(table)} unit(s) of work failed and are missing from every table above. Rerunning the same "
                  "command retries them and leaves finished units alone.", "warning"),
        ctx.assets.table("failures", table, "Failed units")])
