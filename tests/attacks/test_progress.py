"""Per-step progress: ``progress(done, total)`` after each unit of work, for every registered attack."""

from __future__ import annotations

from typing import Any

import pytest

import volrob.attacks as attacks
from volrob.errors import ConfigError

NAMES = attacks.available()


def implied_total(params: dict[str, Any], batch: int) -> int:
    """What an attack's parameters imply: queries per sample (query attacks), one for attacks without iterations,
    else steps times restarts per sample."""
    if "queries" in params:
        return params["queries"] * batch
    if "steps" not in params:
        return 1
    return params["steps"] * params.get("restarts", 1) * batch


def calls_of(attack: attacks.Attack, predictor: Any, x: Any, target: Any) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    attack(predictor, x, target, progress=lambda done, total: calls.append((done, total)))
    return calls


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_progress_counts_every_unit_up_to_the_total(name: str, batch: int, predictors: Any, inputs: Any,
                                                    cheap: Any) -> None:
    attack = cheap(name, eps=8.0)
    x, target = inputs(batch=batch, seed=2)
    calls = calls_of(attack, predictors["regions"], x, target)
    total = implied_total(attack.params(), batch)
    assert total == attack.progress_total(batch) and total >= 1
    assert all(t == total for _, t in calls)
    assert [d for d, _ in calls] == list(range(1, total + 1))  # one call per unit, strictly increasing


def test_totals_follow_the_parameters(cheap: Any) -> None:
    assert cheap("pgd", steps=4, restarts=3).progress_total(2) == 24
    assert cheap("fgsm").progress_total(5) == 5
    assert cheap("asma", steps=7).progress_total(2) == 14
    assert cheap("square3d", queries=9, checkpoints=None).progress_total(3) == 27
    assert cheap("vafa3d", steps=5).progress_total(2) == 10
    assert cheap("gaussian_noise").progress_total(4) == 1


def test_run_reports_progress_like_call(predictors: Any, inputs: Any, cheap: Any) -> None:
    x, target = inputs(batch=2, seed=3)
    calls: list[tuple[int, int]] = []
    cheap("bim").run(predictors["regions"], x, target, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(d, 6) for d in range(1, 7)]


def test_square_sample_that_stops_early_reports_its_unused_queries_at_once(predictors: Any, inputs: Any,
                                                                           cheap: Any) -> None:
    x, target = inputs(batch=2, seed=4)
    calls = calls_of(cheap("square3d", eps=[0.0, 8.0]), predictors["regions"], x, target)
    assert calls == [(1, 12), (6, 12)] + [(d, 12) for d in range(7, 13)]


def test_zero_steps_report_nothing(predictors: Any, inputs: Any, cheap: Any) -> None:
    x, target = inputs(batch=2, seed=5)
    assert calls_of(cheap("pgd", steps=0), predictors["regions"], x, target) == []


class Stop(Exception):
    """Raised by a progress callback."""


@pytest.mark.parametrize("name", NAMES)
def test_callback_exceptions_propagate_and_stop_the_attack(name: str, predictors: Any, inputs: Any,
                                                           cheap: Any) -> None:
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        raise Stop

    x, target = inputs(batch=2, seed=6)
    predictor = predictors["regions"].train()
    try:
        with pytest.raises(Stop):
            cheap(name, eps=8.0)(predictor, x, target, progress=progress)
        assert calls == [1] and predictor.training  # its training flag is restored on the way out
    finally:
        predictor.eval()


def test_progress_must_be_callable(predictors: Any, inputs: Any, cheap: Any) -> None:
    x, target = inputs(batch=1, seed=7)
    with pytest.raises(ConfigError, match="progress") as err:
        cheap("fgsm")(predictors["regions"], x, target, progress=3)
    assert "\n" not in str(err.value)
