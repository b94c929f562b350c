"""White-box robustness: score against budget per model and attack with bootstrap intervals, per-case clean vs
adversarial scatter, and the paired statistics of every attack setting against the clean input."""

from __future__ import annotations

import pandas as pd

from volrob.evaluation.attack_effect import attack_effects
from volrob.report.assets import ci_column, fmt_p
from volrob.report.budget_plot import budget_plot, budget_table
from volrob.report.labels import budget_text
from volrob.report.page import Details, Gallery, Paragraph, Section
from volrob.report.results_dir import RunFolder
from volrob.report.scatter_plot import scatter_plot
from volrob.report.sections.context import Context

ROLES = ("grid", "universal")


def _effects_shown(effects: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "model": effects["model"], "attack": effects["attack"],
        "budget": [budget_text(k, v) for k, v in zip(effects["budget_key"], effects["budget"], strict=True)],
        "n": effects["n"], "clean": effects["clean_mean"].map("{:.3f}".format),
        "attacked": effects["adversarial_mean"].map("{:.3f}".format),
        "drop [95 % CI]": ci_column(effects, "drop", "drop_ci_low", "drop_ci_high", signed=True),
        "Wilcoxon p": effects["wilcoxon_p"].map(fmt_p), "effect size r": effects["effect_size"].map("{:+.2f}".format),
        "max L∞ (/255)": effects["linf_255_max"].map("{:.2f}".format),
        "mean SSIM": effects["ssim_mean"].map("{:.4f}".format)})


def run_blocks(ctx: Context, run: RunFolder, stem: str) -> list:
    """The white-box blocks of one run's results (also used for the defence comparison's own grid)."""
    a, res, region = ctx.assets, run.results, run.region
    assert res is not None
    white = res[res["white_box"].astype(bool)]
    blocks: list = []
    n = white["case"].nunique()
    table = budget_table(white, region=region, metric="dice", seed=run.seed)
    if not table.empty:
        title = f"{ctx.tag()}{region} Dice against budget, white-box (n = {n} case(s))"
        blocks.append(a.figure(f"{stem}_dice_vs_budget", lambda p: budget_plot(table, p, region=region), title,
                               "Budget 0 is the clean input; bands are percentile-bootstrap 95 % intervals of the "
                               "mean over cases."))
        blocks.append(Details("The numbers behind the budget figure", [
            a.table(f"{stem}_dice_vs_budget", table, "Mean Dice and its 95 % interval per model, attack and budget")]))
    blocks.append(Gallery([a.figure(f"{stem}_scatter_{model}", lambda p, m=model: scatter_plot(
        white, p, model=m, region=region), f"{ctx.tag()}{model}: {region} Dice per case, clean against attacked",
        "Points below the diagonal are cases the attack hurt.") for model in pd.unique(white["model"])]))
    effects = attack_effects(white, region=region, seed=run.seed)
    blocks.append(a.table(f"{stem}_paired_statistics", effects,
                          f"Paired statistics of every attack setting against the clean input ({region} Dice)",
                          "Drop = clean − attacked, mean over cases with a percentile-bootstrap 95 % interval; "
                          "two-sided paired Wilcoxon signed-rank test; effect size r = matched-pairs rank-biserial "
                          "correlation of the drops (1: every case got worse, 0: no consistent change).",
                          shown=_effects_shown(effects)))
    return blocks


def build(ctx: Context) -> Section | None:
    """None without a white-box stage."""
    run = next((ctx.results.run(r) for r in ROLES if ctx.results.run(r) is not None), None)
    if run is None or run.results is None or not run.results["white_box"].astype(bool).any():
        return None
    blocks = [Paragraph(f"Each attack crafts on the model it is scored on (white-box), split "
                        f"`{run.config.get('split')}`, region {run.region}.")]
    blocks += run_blocks(ctx, run, "whitebox")
    return Section("whitebox", "White-box robustness", blocks)

