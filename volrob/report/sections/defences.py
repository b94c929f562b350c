"""Defences: each robust model against its reference (clean and under attack, paired per case), and its margin
against a schedule-matched control — the same fine-tuning without a defence — which tells the defence's share of a
margin from the extra training's."""

from __future__ import annotations

import pandas as pd

from volrob.evaluation.compare import compare_models, setting_label
from volrob.evaluation.controls import matched_controls
from volrob.report.assets import ci_column, fmt_p
from volrob.report.compare_plot import plot_comparison
from volrob.report.page import Paragraph, Section
from volrob.report.results_dir import RunFolder
from volrob.report.sections.context import Context

ROLES = ("compare", "grid")


def _shown(table: pd.DataFrame, region: str) -> pd.DataFrame:
    t = table[table["region"] == region]
    return pd.DataFrame({
        "model": t["model"], "defence": t["defence"], "setting": [setting_label(r) for r in t.to_dict("records")],
        "n": t["n"],
        "clean Dice [CI]": ci_column(t, "clean_dice", "clean_ci_low", "clean_ci_high"),
        "attacked Dice [CI]": ci_column(t, "adversarial_dice", "adversarial_ci_low", "adversarial_ci_high"),
        f"attacked − {t['reference'].iloc[0]} [CI]": ci_column(
            t, "diff_adversarial", "diff_adversarial_ci_low", "diff_adversarial_ci_high", signed=True),
        "p (one-sided, better)": t["p_adversarial_greater"].map(fmt_p),
        "clean change [CI]": ci_column(t, "diff_clean", "diff_clean_ci_low", "diff_clean_ci_high", signed=True)})


def control_margins(run: RunFolder, table: pd.DataFrame) -> pd.DataFrame:
    """Each defended model's adversarial-Dice margin against its schedule-matched control (a model of the run
    without a defence whose training schedule equals its own, other than the reference); empty when none."""
    models = run.record.get("models") or {}
    reference = str(table["reference"].iloc[0])
    schedules = {n: m.get("schedule") for n, m in models.items() if m.get("schedule")}
    controls = [n for n in schedules if (models[n].get("defence") or "none") == "none" and n != reference]
    pairs = matched_controls(schedules, controls) if controls else {}
    pairs = {m: c for m, c in pairs.items() if (models[m].get("defence") or "none") != "none"}
    if not pairs or run.results is None:
        return pd.DataFrame()
    defences = {n: str(m.get("defence") or "none") for n, m in models.items()}
    frames = []
    for model, control in pairs.items():
        rows = run.results[run.results["model"].isin([model, control])]
        t = compare_models(rows, defences, control, seed=run.seed)
        frames.append(t[(t["model"] == model) & (t["region"] == run.region)])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def build(ctx: Context) -> Section | None:
    """None without a defence comparison."""
    run = next((r for r in (ctx.results.run(x) for x in ROLES) if r is not None
                and (r.path / "comparison.csv").is_file()), None)
    if run is None:
        return None
    table = run.table("comparison.csv")
    if table is None or table.empty:
        return None
    a, region = ctx.assets, run.region
    reference = str(table["reference"].iloc[0])
    n = sorted({int(v) for v in table["n"]})
    blocks: list = [Paragraph(
        f"Every model under the same attacks on the same {', '.join(map(str, n))} case(s); differences are paired "
        f"per case against the reference `{reference}` (model − reference) with percentile-bootstrap 95 % "
        "intervals and paired Wilcoxon signed-rank tests (one-sided: is the model better under attack?).")]
    title = f"{ctx.tag()}{region} Dice of each model, clean and under attack, against {reference}"
    blocks.append(a.figure("defences", lambda p: plot_comparison(table, p, region=region), title))
    blocks.append(a.table("defences", table, f"Robust against reference ({region})", shown=_shown(table, region)))
    margins = control_margins(run, table)
    if margins.empty:
        blocks.append(Paragraph(
            "No schedule-matched control ran (a model fine-tuned like a robust one but without a defence), so a "
            "margin above cannot be split into the defence's share and the extra training's.", "note"))
    else:
        shown = _shown(margins, region).rename(columns={
            f"attacked − {margins['reference'].iloc[0]} [CI]": "attacked − control [CI]"})
        shown.insert(1, "control", margins["reference"].to_numpy())
        blocks.append(a.table("defences_vs_control", margins,
                              "Margin against the schedule-matched control (same seed, data, starting weights and "
                              "training options, no defence)", shown=shown))
    return Section("defences", "Defences", blocks)
