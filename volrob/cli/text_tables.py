"""The short tables the commands print: each reads the run's own tables, nothing else."""

from __future__ import annotations

import pandas as pd

from volrob.data.labels import REGIONS
from volrob.engine.kernel import RunResult
from volrob.evaluation.transfer_matrix import pivot
from volrob.report.labels import budget_text


def run_line(result: RunResult) -> str:
    """``N cell(s) x M case(s), K unit(s) computed now; results in OUT/results.csv``."""
    return (f"{len(result.cells)} cell(s) x {len(result.cases)} case(s), {result.computed} unit(s) computed now; "
            f"results in {result.out_dir / 'results.csv'}")


def attack_summary(summary: pd.DataFrame, model: str | None = None) -> str:
    """Per region: Dice and HD95 clean → adversarial, relative Dice drop, paired Wilcoxon p (one cell). HD95 is the
    official BraTS definition (``hd95_brats``) when the run has it, else MONAI's ``hd95``."""
    rows = summary if model is None else summary[summary["model"] == model]
    hd = "hd95_brats" if (rows["metric"] == "hd95_brats").any() else "hd95"
    lines = [f"{'region':<6}  {'dice clean → adv':<18}  {'rel drop':>8}  {'p':>7}  {hd + ' clean → adv (mm)':<22}"]
    for region in REGIONS:
        d = rows[(rows.region == region) & (rows.metric == "dice")]
        h = rows[(rows.region == region) & (rows.metric == hd)]
        if d.empty or h.empty:
            continue
        d, h = d.iloc[0], h.iloc[0]
        lines.append(f"{region:<6}  {d.clean_mean:.3f} → {d.adversarial_mean:.3f}    {d.rel_degradation:>7.1%}  "
                     f"{d.wilcoxon_p:>7.3f}  {h.clean_mean:.2f} → {h.adversarial_mean:.2f}")
    return "\n".join(lines)


def cell_lines(summary: pd.DataFrame, region: str) -> str:
    """One line per cell and scored model: ``region`` Dice clean → adversarial and the relative drop."""
    rows = summary[(summary["region"] == region) & (summary["metric"] == "dice")]
    width = max((len(c) for c in rows["cell"]), default=10)
    return "\n".join(f"  {r.cell:<{width}}  {r.model:<12}  {region} Dice {r.clean_mean:.3f} -> "
                     f"{r.adversarial_mean:.3f} ({r.rel_degradation:.1%} drop, n={r.n})" for r in rows.itertuples())


def matrix_text(matrices: pd.DataFrame, sources: list[str], targets: list[str], value: str = "dice_drop") -> str:
    """Text matrices (one per attack and budget) of ``value`` for the terminal."""
    blocks = []
    for (attack, key, budget), g in matrices.groupby(["attack", "budget_key", "budget"], sort=False, dropna=False):
        frame = pivot(g, value, sources, targets)
        n = int(g["n"].max()) if len(g) else 0
        blocks.append(f"{attack} {budget_text(key, budget)} — {value}, n={n} case(s) (rows: source, columns: "
                      "scored model)\n" + frame.to_string(float_format=lambda v: f"{v:.3f}"))
    return "\n\n".join(blocks)


def query_lines(queries: pd.DataFrame, region: str) -> str:
    """Mean ``region`` Dice of the most damaging input found so far, per query count (0 = clean)."""
    sel = queries[(queries["region"] == region) & (queries["metric"] == "dice")]
    means = sel.groupby("queries", sort=True)["adversarial"].mean()
    n = sel["case"].nunique()
    lines = [f"{'queries':>8}  mean {region} Dice (n={n})"]
    lines += [f"{q:>8}  {v:.4f}" + ("  (clean)" if q == 0 else "") for q, v in means.items()]
    return "\n".join(lines)


def universal_lines(results: pd.DataFrame, region: str) -> str:
    """Per scored model: mean ``region`` Dice clean, under the universal perturbation and under the noise control."""
    sel = results[(results["region"] == region) & (results["metric"] == "dice")]
    lines = [f"{'model':<20}  {region + ' dice clean':>13}  {'universal':>9}  {'noise':>7}"]
    for model, g in sel.groupby("model", sort=False):
        uni, noise = g[g["attack"] == "universal"], g[g["attack"] == "sign_noise"]
        lines.append(f"{model:<20}  {uni['clean'].mean():>13.3f}  {uni['adversarial'].mean():>9.3f}  "
                     f"{noise['adversarial'].mean():>7.3f}")
    return "\n".join(lines)
