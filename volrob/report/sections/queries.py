"""Black-box by queries: the score against the number of queries to the model."""

from __future__ import annotations

from volrob.report.page import Paragraph, Section
from volrob.report.query_plot import query_plot
from volrob.report.sections.context import Context


def build(ctx: Context) -> Section | None:
    """None when no run kept query snapshots."""
    blocks: list = []
    for run in ctx.results.runs.values():
        queries = run.table("queries.csv")
        if queries is None or queries.empty:
            continue
        region = run.region
        n = queries["case"].nunique()
        title = f"{ctx.tag()}{region} Dice against queries of the black-box attack (n = {n} case(s))"
        blocks.append(ctx.assets.figure(f"queries_{run.role}", lambda p, q=queries, r=region: query_plot(
            q, p, region=r), title, "At each query count: the most damaging input found so far; the dashed line is "
                                    "the clean score."))
        blocks.append(ctx.assets.table(f"queries_{run.role}", queries, "Scores at each query count"))
    if not blocks:
        return None
    return Section("queries", "Black-box by queries", [
        Paragraph("The attack sees only the model's outputs: every query is one forward pass."), *blocks])
