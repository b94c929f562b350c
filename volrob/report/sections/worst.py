"""The worst cases: for every attack setting, the case it damaged most, drawn in three planes — clean image,
adversarial image, amplified perturbation, and the reference and both predictions as overlays."""

from __future__ import annotations

from typing import Any

from volrob.report.labels import budget_text
from volrob.report.page import Details, Paragraph, Section
from volrob.report.sections.context import Context
from volrob.report.sections.overview import STAGE_TITLES


def _dice(view: dict[str, Any], which: str) -> dict[str, float]:
    return dict((view.get("dice") or {}).get(which) or {})


def drop_of(view: dict[str, Any]) -> float:
    """The view's Dice drop as the run's table records it."""
    table = _dice(view, "table")
    try:
        return float(table["clean"]) - float(table["adversarial"])
    except (KeyError, TypeError, ValueError):
        return float("nan")


def caption(view: dict[str, Any]) -> str:
    """What a view shows, and whether the scores of the predictions it draws agree with the table."""
    nan = float("nan")
    table, again = _dice(view, "table"), _dice(view, "recomputed")
    text = (f"Case `{view.get('case')}`, this setting's largest {view.get('region')} Dice drop: "
            f"{float(table.get('clean', nan)):.3f} → {float(table.get('adversarial', nan)):.3f}. "
            f"Channel {view.get('channel')}; perturbation ({view.get('perturbation')}) shown "
            f"×{float(view.get('amplification', nan)):g}, L∞ {float(view.get('linf_255', nan)):.2f}/255; slices by "
            f"{view.get('slice_rule')}.")
    if not (view.get("dice") or {}).get("match", True):
        text += (f" The drawn predictions score {float(again.get('clean', nan)):.3f} → "
                 f"{float(again.get('adversarial', nan)):.3f} on the model grid, not the table's.")
    return text


ORDER = ("grid", "universal", "query", "compare", "transfer")
"""Whose views lead the section: the white-box grid's; the others' are folded below, stage by stage."""


def build(ctx: Context) -> Section | None:
    """None when no run drew worst-case views."""
    a = ctx.assets
    runs = sorted(ctx.results.runs.values(), key=lambda r: ORDER.index(r.role) if r.role in ORDER else len(ORDER))
    shown: list = []
    folded: list = []
    for run in runs:
        views = run.views()
        if not views:
            continue
        stage = STAGE_TITLES.get(run.role, run.role)
        worst: dict[str, dict[str, Any]] = {}
        for view, _ in views:
            model = str(view.get("model"))
            if model not in worst or drop_of(view) > drop_of(worst[model]):
                worst[model] = view
        lead, rest = [], []
        for view, png in views:
            title = (f"{ctx.tag()}{stage}: {view.get('model')}, {view.get('attack')} "
                     f"{budget_text(view.get('budget_key'), view.get('budget'))}")
            block = a.copy_figure(png, f"view_{run.role}_{view.get('cell')}", title, caption(view))
            (lead if not shown and worst[str(view.get("model"))] is view else rest).append(block)
        if lead:
            shown = lead
        if rest:
            folded.append(Details(f"{stage}: the worst case of {'every other' if lead else 'each'} attack setting "
                                  f"({len(rest)})", rest))
    if not shown:
        return None
    return Section("worst", "Worst cases", [
        Paragraph("Per model, the attack setting and case with the largest Dice drop; the worst case of every other "
                  "setting is folded below. Slices pass where the prediction changed most."), *shown, *folded])
