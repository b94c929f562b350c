"""Properties every registered attack must have (threat set, purity, determinism, batch consistency, record)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import volrob.attacks as attacks
from volrob.attacks.registry import ATTACKS
from volrob.attacks.threat import ThreatModel

NAMES = attacks.available()
MODEL_FREE = ("gaussian_noise", "sign_noise", "universal")
FAST = {"steps": 2, "block": 8, "restarts": 1, "queries": 4,  # cheap settings, passed only to attacks that take them
        "delta": torch.linspace(-0.06, 0.06, 4 * 8**3).reshape(4, 8, 8, 8)}  # the universal attack's perturbation
SETTINGS = settings(max_examples=5, deadline=None)


def build(name: str, *, eps: float | list[float], norm: str, mask: str, seed: int) -> attacks.Attack:
    """``create(name, ...)`` with the threat options and the cheap settings the attack's signature accepts."""
    builder = ATTACKS.entry(name).builder
    assume(norm in getattr(builder, "norms", ("linf", "l2")))  # e.g. query attacks that support only linf
    params = inspect.signature(builder).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    cfg: dict[str, Any] = {k: v for k, v in FAST.items() if takes_all or k in params}
    if takes_all or "eps" in params:
        cfg.update(eps=eps, norm=norm, mask=mask)
    elif "threat" in params:
        cfg["threat"] = ThreatModel(eps=eps, norm=norm, mask=mask)
    if takes_all or "seed" in params:
        cfg["seed"] = seed
    return attacks.create(name, **cfg)


def has_budget(record: dict[str, Any]) -> bool:
    """False for attacks without a voxel-space budget (their record's threat eps is None)."""
    return record.get("threat", {}).get("eps") is not None


cases = st.fixed_dictionaries({
    "seed": st.integers(0, 2**16),
    "eps": st.sampled_from([2.0, 8.0, 16.0]),
    "norm": st.sampled_from(["linf", "l2"]),
    "mode": st.sampled_from(["regions", "labels"]),
    "data_seed": st.integers(0, 2**16),
})


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=cases)
def test_result_stays_in_threat_set(name: str, case: dict[str, Any], predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, mode=case["mode"], seed=case["data_seed"])
    x_before, target_before = x.clone(), target.clone()
    attack = build(name, eps=case["eps"], norm=case["norm"], mask="brain", seed=case["seed"])
    res = attack.run(predictors[case["mode"]], x, target)
    assert torch.equal(x, x_before) and torch.equal(target, target_before)  # inputs untouched
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    background = (x == 0).all(dim=1, keepdim=True).expand_as(x)
    assert torch.equal(res.x_adv[background], x[background])  # outside the brain mask nothing moves
    if has_budget(res.record):
        delta = (res.x_adv - x).flatten(1).double()
        radius = case["eps"] / 255 + 1e-6
        norms = delta.abs().amax(1) if case["norm"] == "linf" else delta.norm(dim=1)
        assert bool((norms <= radius).all()), norms.tolist()


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(seed=st.integers(0, 2**16), norm=st.sampled_from(["linf", "l2"]))
def test_mask_none_lets_background_move(name: str, seed: int, norm: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=1, seed=seed)
    res = build(name, eps=16.0, norm=norm, mask="none", seed=seed).run(predictors["regions"], x, target)
    background = (x == 0).all(dim=1, keepdim=True).expand_as(x)
    assert bool((res.x_adv[background] != 0).any())
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(seed=st.integers(0, 2**16), norm=st.sampled_from(["linf", "l2"]), mode=st.sampled_from(["regions", "labels"]))
def test_same_seed_same_result(name: str, seed: int, norm: str, mode: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=1, mode=mode, seed=seed)
    first = build(name, eps=8.0, norm=norm, mask="brain", seed=seed).run(predictors[mode], x, target)
    second = build(name, eps=8.0, norm=norm, mask="brain", seed=seed).run(predictors[mode], x, target)
    assert torch.equal(first.x_adv, second.x_adv)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(seed=st.integers(0, 2**16), norm=st.sampled_from(["linf", "l2"]), mode=st.sampled_from(["regions", "labels"]))
def test_alone_equals_in_batch(name: str, seed: int, norm: str, mode: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, mode=mode, seed=seed)
    attack = build(name, eps=8.0, norm=norm, mask="brain", seed=seed)
    batched = attack.run(predictors[mode], x, target).x_adv
    alone = attack.run(predictors[mode], x[1:], target[1:]).x_adv  # the second sample moves to index 0
    torch.testing.assert_close(alone, batched[1:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_record_is_complete_and_serialisable(name: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2)
    attack = build(name, eps=4.0, norm="linf", mask="brain", seed=5)
    record = attack.run(predictors["regions"], x, target).record
    json.dumps(record)
    assert record["attack"] == name and record["seed"] == 5 and record["params"] == attack.params()
    assert isinstance(record["loss"], list) and record["seconds"] >= 0
    if not has_budget(record):
        return  # attacks without a voxel budget describe their threat their own way
    assert record["threat"] == attack.threat.to_dict()
    delta = (attack.run(predictors["regions"], x, target).x_adv - x).flatten(1).double() * 255
    assert record["linf_255"] == pytest.approx(delta.abs().amax(1).tolist(), abs=1e-4)
    assert record["l2_255"] == pytest.approx(delta.norm(dim=1).tolist(), rel=1e-5)


BUDGETED = [n for n in NAMES if "eps" in inspect.signature(ATTACKS.entry(n).builder).parameters]


@pytest.mark.parametrize("name", BUDGETED)
@SETTINGS
@given(case=cases, eps=st.lists(st.sampled_from([0.0, 1.0, 4.0, 16.0, 64.0]), min_size=2, max_size=2))
def test_per_sample_eps_budgets_and_batch_consistency(name: str, case: dict[str, Any], eps: list[float],
                                                      predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, mode=case["mode"], seed=case["data_seed"])
    attack = build(name, eps=eps, norm=case["norm"], mask="brain", seed=case["seed"])
    res = attack.run(predictors[case["mode"]], x, target)
    delta = (res.x_adv - x).flatten(1).double()
    norms = delta.abs().amax(1) if case["norm"] == "linf" else delta.norm(dim=1)
    assert bool((norms <= torch.tensor(eps, dtype=torch.float64) / 255 + 1e-6).all()), (norms.tolist(), eps)
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert res.record["threat"]["eps"] == eps
    for i, e in enumerate(eps):
        alone = build(name, eps=e, norm=case["norm"], mask="brain", seed=case["seed"])
        torch.testing.assert_close(alone.run(predictors[case["mode"]], x[i:i + 1], target[i:i + 1]).x_adv,
                                   res.x_adv[i:i + 1], atol=1e-7, rtol=0)


class _ModeSpy(torch.nn.Module):
    """Wraps a predictor; records the training flag of every forward."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.output_mode = getattr(inner, "output_mode", "regions")
        self.window = getattr(inner, "window", None)
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.inner(x)


@pytest.mark.parametrize("name", NAMES)
def test_runs_in_eval_mode_and_restores_train_mode(name: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=1, seed=0)
    spy = _ModeSpy(predictors["regions"]).train()
    build(name, eps=8.0, norm="linf", mask="brain", seed=0).run(spy, x, target)
    assert not any(spy.modes)  # every forward in eval mode (no dropout, no statistics updated)
    assert bool(spy.modes) == (name not in MODEL_FREE)  # noise and a given perturbation never call the model
    assert spy.training and spy.inner.training
    spy.eval()
