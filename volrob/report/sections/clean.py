"""Clean performance: every model's scores on the evaluation split before any attack."""

from __future__ import annotations

import pandas as pd

from volrob.evaluation.summary import summarize
from volrob.report.assets import ci_column, display
from volrob.report.clean_plot import clean_plot
from volrob.report.page import Paragraph, Section
from volrob.report.sections.context import Context


def build(ctx: Context) -> Section | None:
    """None without an evaluation stage."""
    run = ctx.results.run("evaluate")
    if run is None or run.results is None or run.results.empty:
        return None
    a = ctx.assets
    summary = summarize(run.results, by=("model", "region", "metric"), value="clean", seed=run.seed)
    blocks: list = []
    split = run.config.get("split")
    blocks.append(Paragraph(f"Split `{split}`, {run.results['case'].nunique()} case(s); mean with a percentile "
                            "bootstrap 95 % interval. HD95 in mm (its definition is named in the table); "
                            "empty predictions are scored, never dropped."))
    if (summary["metric"] == "dice").any():
        n = run.results["case"].nunique()
        blocks.append(a.figure("clean_dice", lambda p: clean_plot(summary, p), f"{ctx.tag()}Clean Dice per model "
                               f"and region (n = {n} case(s))"))
    wide = summary.assign(value=ci_column(summary, "mean", "ci_low", "ci_high"))
    shown = wide.pivot_table(index=["model", "region"], columns="metric", values="value", aggfunc="first",
                             sort=False).reset_index()
    shown.columns.name = None
    blocks.append(a.table("clean_summary", summary, "Clean scores: mean [95 % CI]",
                          shown=display(pd.DataFrame(shown))))
    return Section("clean", "Clean performance", blocks)
