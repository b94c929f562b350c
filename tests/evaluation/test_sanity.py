"""Sanity flags on hand-made grid tables: each flag raised and not raised, thresholds, the region of the
comparison, what a raised flag means and what to try, and the output format."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from volrob.errors import ConfigError
from volrob.evaluation.sanity import CELL_COLUMNS, CHECKS, SanityThresholds, format_flags, run_checks

GRID_CHECKS = [c for c in CHECKS if c != "blackbox_stronger_than_whitebox"]  # the transfer check reads matrices


def _cell(cell: str, attack: str = "pgd", *, model: str = "m", kind: str = "gradient", budget: float = 8.0,
          steps: float = 10.0, clean: float = 0.8, adv: float = 0.1, linf: float = 8.0, defended: bool = False,
          targeted: bool = False, key: str = "eps", window: str = "{}", tc_adv: float | None = None,
          **options: Any) -> dict[str, Any]:
    """One cell row of the cell table plus the WT Dice its two cases average to (``_clean``, ``_adv``); TC gets
    ``tc_adv`` when given (else the WT value)."""
    opts = {key: budget, **options} | ({"steps": steps} if kind == "gradient" else {})
    return {"cell": cell, "model": model, "defended": defended, "attack": attack, "kind": kind,
            "targeted": targeted, "budget_key": key, "budget": budget, "eps": budget if key == "eps" else None,
            "steps": steps if kind == "gradient" else None, "options": json.dumps(opts, sort_keys=True),
            "window": window, "_clean": clean, "_adv": adv, "_linf": linf, "_tc_adv": adv if tc_adv is None else tc_adv}


def _tables(cells: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for c in cells:
        for case, shift in (("a", -0.05), ("b", 0.05)):  # two cases whose mean is the cell's value
            for region in ("TC", "WT", "ET"):
                adv = c["_tc_adv"] if region == "TC" else c["_adv"]
                rows.append({"cell": c["cell"], "case": case, "region": region, "metric": "dice",
                             "clean": c["_clean"] + shift, "adversarial": adv + shift, "linf_255": c["_linf"]})
                rows.append({"cell": c["cell"], "case": case, "region": region, "metric": "hd95",
                             "clean": 5.0, "adversarial": 50.0, "linf_255": c["_linf"]})
    table = pd.DataFrame([{k: v for k, v in c.items() if not k.startswith("_")} for c in cells])
    assert list(table.columns) == CELL_COLUMNS
    return pd.DataFrame(rows), table


def _flags(cells: list[dict[str, Any]], losses: dict[str, list[list[float]]] | None = None, region: str = "WT",
           **thresholds: Any) -> dict[str, Any]:
    results, table = _tables(cells)
    if losses is None:
        losses = {c["cell"]: [[1.0, 2.0, 3.0]] for c in cells}
    return {f.name: f for f in run_checks(results, table, losses, SanityThresholds(**thresholds), region=region)}


def test_healthy_grid_is_all_clear() -> None:
    cells = [_cell("n4", "gaussian_noise", kind="noise", budget=4, adv=0.78),
             _cell("n8", "gaussian_noise", kind="noise", budget=8, adv=0.75),
             _cell("p4", budget=4, adv=0.3), _cell("p8", budget=8, adv=0.1),
             _cell("p8s20", budget=8, steps=20, adv=0.05)]
    flags = _flags(cells)
    assert list(flags) == GRID_CHECKS
    assert not any(f.raised for f in flags.values()) and all(f.applicable for f in flags.values())
    assert format_flags(list(flags.values())) == "sanity checks: all clear (5 checks)"


def test_no_collapse_at_max_budget() -> None:
    cells = [_cell("p4", budget=4, adv=0.2), _cell("p8", budget=8, adv=0.5)]
    flag = _flags(cells)["no_collapse_at_max_budget"]
    assert flag.raised and flag.cells == ["p8"]
    assert flag.evidence[0]["ratio"] == pytest.approx(0.5 / 0.8)
    assert not _flags(cells, collapse_ratio=0.7)["no_collapse_at_max_budget"].raised  # threshold is honoured
    defended = [dict(c, defended=True) for c in cells]
    assert not _flags(defended)["no_collapse_at_max_budget"].applicable
    useless = [_cell("p8", clean=0.05, adv=0.05)]  # nothing to collapse: skipped, not raised
    assert not _flags(useless)["no_collapse_at_max_budget"].raised
    assert _flags(useless, min_clean_dice=0.01)["no_collapse_at_max_budget"].raised  # its threshold is honoured


def test_no_collapse_expects_nothing_of_single_step_or_non_eps_budgets() -> None:
    single = [_cell("f8", "fgsm", budget=8, steps=1, adv=0.7)]
    assert not _flags(single)["no_collapse_at_max_budget"].applicable
    vafa = [_cell("v20", "vafa3d", key="q_max", budget=20, steps=20, adv=0.7)]
    assert not _flags(vafa)["no_collapse_at_max_budget"].applicable
    targeted = [_cell("t8", "asma", targeted=True, adv=0.7)]
    assert not _flags(targeted)["no_collapse_at_max_budget"].applicable
    mixed = [*single, *vafa, _cell("p8", budget=8, adv=0.7)]  # the iterative eps attack is still judged
    assert _flags(mixed)["no_collapse_at_max_budget"].cells == ["p8"]


def test_the_region_chooses_the_dice_compared() -> None:
    cells = [_cell("p8", adv=0.1, tc_adv=0.7)]  # WT collapses, TC does not
    assert not _flags(cells)["no_collapse_at_max_budget"].raised
    flag = _flags(cells, region="TC")["no_collapse_at_max_budget"]
    assert flag.raised and "TC Dice" in flag.message
    with pytest.raises(TypeError):
        SanityThresholds(region="TC")  # type: ignore[call-arg]  # the region is the run's, not a threshold


def test_step_and_budget_groups_keep_window_settings_apart() -> None:
    tiles = '{"gradient": "tiles"}'
    steps = [_cell("s5", steps=5, adv=0.1), _cell("s20", steps=20, adv=0.3, window=tiles)]
    assert not _flags(steps)["more_steps_weaker"].applicable
    budgets = [_cell("p4", budget=4, adv=0.1), _cell("p8", budget=8, adv=0.3, window=tiles)]
    assert not _flags(budgets)["budget_not_monotone"].applicable
    same = [_cell("p4", budget=4, adv=0.1, window=tiles), _cell("p8", budget=8, adv=0.3, window=tiles)]
    assert _flags(same)["budget_not_monotone"].raised


def test_more_steps_weaker() -> None:
    cells = [_cell("s5", steps=5, adv=0.1), _cell("s20", steps=20, adv=0.3)]
    flag = _flags(cells)["more_steps_weaker"]
    assert flag.raised and flag.cells == ["s20", "s5"] and flag.evidence[0]["steps"] == [5, 20]
    ok = [_cell("s5", steps=5, adv=0.3), _cell("s20", steps=20, adv=0.1)]
    assert not _flags(ok)["more_steps_weaker"].raised
    other = [_cell("s5", steps=5, adv=0.1), _cell("s20", steps=20, adv=0.3, loss="ce")]  # other options
    assert not _flags(other)["more_steps_weaker"].applicable
    assert not _flags(cells, tolerance=0.25)["more_steps_weaker"].raised


def test_noise_stronger_than_gradient() -> None:
    cells = [_cell("n8", "gaussian_noise", kind="noise", adv=0.1), _cell("f8", "fgsm", steps=1, adv=0.4)]
    flag = _flags(cells)["noise_stronger_than_gradient"]
    assert flag.raised and flag.cells == ["f8", "n8"]
    assert flag.evidence[0]["noise"] == pytest.approx(0.1) and flag.evidence[0]["gradient"] == pytest.approx(0.4)
    cells[1]["_adv"] = cells[1]["_tc_adv"] = 0.05
    assert not _flags(cells)["noise_stronger_than_gradient"].raised
    cells[1].update(budget=4, eps=4)  # not at the same eps: nothing to compare
    assert not _flags(cells)["noise_stronger_than_gradient"].applicable


def test_zero_gradient_from_loss_and_perturbation() -> None:
    cells = [_cell("p8")]
    flag = _flags(cells, {"p8": [[0.7, 0.7, 0.7], [0.2, 0.2, 0.2]]})["zero_gradient"]
    assert flag.raised and "loss never changes" in flag.message and flag.evidence[0]["loss_spread"] == 0.0
    assert not _flags(cells, {"p8": [[0.7, 0.7, 0.7], [0.2, 0.3, 0.4]]})["zero_gradient"].raised
    assert _flags(cells, {"p8": [[0.7, 0.8]]}, loss_atol=0.5)["zero_gradient"].raised  # the threshold is honoured
    still = _flags([_cell("p8", linf=0.0)])["zero_gradient"]
    assert still.raised and "perturbation is zero" in still.message
    noise_only = _flags([_cell("n8", "gaussian_noise", kind="noise", linf=0.0)], {"n8": [[]]})
    assert not noise_only["zero_gradient"].applicable


def test_budget_not_monotone() -> None:
    cells = [_cell("p4", budget=4, adv=0.1), _cell("p8", budget=8, adv=0.3), _cell("p16", budget=16, adv=0.05)]
    flag = _flags(cells)["budget_not_monotone"]
    assert flag.raised and flag.cells == ["p4", "p8"] and flag.evidence[0]["budget"] == [4.0, 8.0]
    assert not _flags(cells, tolerance=0.25)["budget_not_monotone"].raised
    vafa = [_cell("q10", "vafa3d", key="q_max", budget=10, adv=0.2), _cell("q30", "vafa3d", key="q_max",
                                                                             budget=30, adv=0.5)]
    assert _flags(vafa)["budget_not_monotone"].raised


def test_raised_flags_say_what_they_mean_and_what_to_try() -> None:
    flags = list(_flags([_cell("p8", adv=0.7)]).values())
    raised = next(f for f in flags if f.raised)
    assert raised.name == "no_collapse_at_max_budget" and raised.meaning and raised.advice
    assert raised.to_dict()["meaning"] == raised.meaning and raised.to_dict()["advice"] == raised.advice
    json.dumps([f.to_dict() for f in flags])  # sanity.json holds these dicts as they are
    lines = format_flags(flags).splitlines()
    assert lines[0].startswith("!! SANITY FLAG: no_collapse_at_max_budget:") and len(lines) == 3
    assert lines[1] == f"   what it means: {raised.meaning}" and lines[2] == f"   what to try: {raised.advice}"
    assert all(f.meaning and f.advice for f in flags)  # every check has its guide, raised or not


def test_bad_input() -> None:
    results, table = _tables([_cell("p8")])
    with pytest.raises(ConfigError, match="lacks column"):
        run_checks(results, table.drop(columns=["steps"]), {})
    for name in ("collapse_ratio", "min_clean_dice", "tolerance", "loss_atol"):
        with pytest.raises(ConfigError, match=f"sanity.{name}"):
            SanityThresholds(**{name: -1})
    with pytest.raises(ConfigError, match="sanity.tolerance"):
        SanityThresholds(tolerance=float("nan"))
