"""A universal perturbation: learned once on the source, tiled over unseen cases, scored on every model beside
random-sign noise of the same budget."""

from __future__ import annotations

import json

import pandas as pd

from volrob.evaluation.universal_effect import universal_effects
from volrob.report.assets import ci_column, display, fmt_p
from volrob.report.page import Paragraph, Section
from volrob.report.sections.context import Context


def build(ctx: Context) -> Section | None:
    """None without a run that scored a universal perturbation and its control."""
    run = ctx.results.run("universal")
    if run is None or run.results is None:
        return None
    table = universal_effects(run.results, region=run.region, seed=run.seed)
    if table.empty:
        return None
    learned = run.path / "universal" / "record.json"
    how = ""
    if learned.is_file():
        params = dict(json.loads(learned.read_text(encoding="utf-8")).get("params") or {})
        how = ", ".join(f"{k} {v}" for k, v in sorted(params.items()) if isinstance(v, (int, float, str))
                        and not k.endswith("sha256"))
        how = f" Learned with {how}." if how else ""
    shown = pd.DataFrame({
        "model": table["model"], "white-box": table["white_box"].map({True: "yes", False: "no"}), "n": table["n"],
        "clean": table["clean"].map("{:.3f}".format), "universal": table["universal"].map("{:.3f}".format),
        "control": table["control"].map("{:.3f}".format),
        "universal − control [95 % CI]": ci_column(table, "diff", "diff_ci_low", "diff_ci_high", signed=True),
        "p (universal lower)": table["p_universal_lower"].map(fmt_p),
        "effect size r": table["effect_size"].map("{:+.2f}".format)})
    return Section("universal", "Universal perturbation", [
        Paragraph(f"One perturbation, learned on the source's training cases, tiled over the unseen cases of split "
                  f"`{run.config.get('split')}` and scored on every model; the control is random-sign noise of the "
                  f"same budget on the same cases (region {run.region}).{how}"),
        ctx.assets.table("universal", table, "Universal perturbation against its control",
                         "Paired per case; one-sided Wilcoxon signed-rank test that the universal perturbation leaves "
                         "a lower Dice than the control; r = matched-pairs rank-biserial correlation (1: lower on "
                         "every case).", shown=display(shown))])
