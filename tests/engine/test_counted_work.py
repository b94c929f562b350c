"""Counted: within a run, each (case, preprocessing) is prepared once and each (model, case) scored clean once,
however many cells and targets there are; a resumed run prepares and scores only what its missing units need."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from volrob.engine import cases as cases_mod
from volrob.engine import kernel, work
from volrob.engine.config import parse_run_config
from volrob.engine.kernel import run_experiment


@pytest.fixture()
def counters(monkeypatch: pytest.MonkeyPatch) -> dict[str, Counter[Any]]:
    counts: dict[str, Counter[Any]] = {"prepared": Counter(), "clean": Counter(), "scored": Counter()}
    real_pre, real_clean, real_score = cases_mod.preprocess, kernel.clean_unit, work.score_on_source

    def preprocess(*args: Any, **kwargs: Any) -> Any:
        out = real_pre(*args, **kwargs)
        counts["prepared"][tuple(out.image.shape)] += 1
        return out

    def clean_unit(ctx: Any, unit: Any, *args: Any) -> Any:
        counts["clean"][(unit.model, unit.case)] += 1
        return real_clean(ctx, unit, *args)

    def score(*args: Any, **kwargs: Any) -> Any:
        counts["scored"]["all"] += 1
        return real_score(*args, **kwargs)

    monkeypatch.setattr(cases_mod, "preprocess", preprocess)
    monkeypatch.setattr(kernel, "clean_unit", clean_unit)
    monkeypatch.setattr(work, "score_on_source", score)
    return counts


def _cfg(manifest: Path, first: Path, second: Path, attacks: list[dict[str, Any]]) -> Any:
    return parse_run_config({"seed": 0, "split": "train", "max_cases": 2, "manifest": str(manifest),
                             "models": [{"name": "a", "checkpoint": str(first)},
                                        {"name": "b", "checkpoint": str(second)}],
                             "attacks": attacks, "outputs": {"views": False}})  # views prepare their cases again


ATTACKS = [{"attack": "gaussian_noise", "eps": [2, 4, 8]}, {"attack": "fgsm", "eps": [4, 8]}]


@pytest.mark.usefixtures("one_thread")
def test_each_case_prepared_and_scored_clean_once(tiny_checkpoint: Path, second_checkpoint: Path,
                                                  synth_manifest: Path, tmp_path: Path,
                                                  counters: dict[str, Counter[Any]]) -> None:
    cfg = _cfg(synth_manifest, tiny_checkpoint, second_checkpoint, ATTACKS)
    res = run_experiment(cfg, tmp_path / "grid", command="robustness", progress=False, echo=lambda _: None)
    cells = len(res.cells)
    assert cells == 2 * 5 and len(res.cases) == 2
    assert sum(counters["prepared"].values()) == 2  # two cases, one shared preprocessing, ten cells
    assert counters["clean"] == Counter({(m, c): 1 for m in ("a", "b") for c in res.cases})
    assert counters["scored"]["all"] == 2 * 2 + cells * 2  # clean once per (model, case), then one per unit
    assert res.tables is not None and len(res.tables.results) == cells * 2 * 9

    for c in counters.values():
        c.clear()
    again = run_experiment(cfg, tmp_path / "grid", command="robustness", progress=False, echo=lambda _: None)
    assert again.computed == 0 and sum(counters["prepared"].values()) == 0 and not counters["clean"]
    assert again.tables is not None
    assert again.tables.results.drop(columns="seconds").equals(res.tables.results.drop(columns="seconds"))

    bigger = _cfg(synth_manifest, tiny_checkpoint, second_checkpoint, [*ATTACKS, {"attack": "fgsm", "eps": [2]}])
    more = run_experiment(bigger, tmp_path / "grid", command="robustness", progress=False, echo=lambda _: None)
    assert more.computed == 2 * 2  # the new cell on both models and both cases; nothing else
    assert sum(counters["prepared"].values()) == 2 and not counters["clean"]  # clean scores reused from disk
