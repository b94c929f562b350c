"""Square3D: black-box (no gradients, counted queries), threat set, determinism, loss curve, schedule, snapshots."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

import volrob.attacks as attacks
from volrob.attacks.loop import per_sample
from volrob.attacks.losses import resolve_loss
from volrob.attacks.square import SquareResult, cube_side, schedule_fraction
from volrob.errors import ConfigError


class Spy(torch.nn.Module):
    """Wraps a predictor: counts forward calls and fails if one could build a graph or read a gradient."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.output_mode = inner.output_mode
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled()
        assert not x.requires_grad
        self.calls += 1
        return self.inner(x)


def square(**cfg: Any) -> attacks.Attack:
    return attacks.create("square3d", **{"eps": 8.0, "queries": 12, "seed": 1, **cfg})


def increasing_loss() -> Any:
    """A loss that grows with every call, so every candidate is accepted."""
    counter = itertools.count()

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float(next(counter)))

    return loss


def test_registered_as_query_attack() -> None:
    from volrob.attacks.registry import ATTACKS

    assert "square3d" in attacks.available()
    assert ATTACKS.entry("square3d").extras["family"] == "query"


@pytest.mark.parametrize("queries", [1, 3, 9])
def test_never_reads_gradients_and_counts_queries(queries: int, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2)
    for param in predictors["regions"].parameters():
        param.grad = None
    for i in range(2):
        spy = Spy(predictors["regions"])
        res = square(queries=queries).run(spy, x[i:i + 1], target[i:i + 1])
        assert spy.calls == res.record["queries_used"][0] <= queries
        assert res.record["queries_used"][0] == queries  # a regular input spends the whole budget
    spy = Spy(predictors["regions"])
    res = square(queries=queries).run(spy, x, target)
    assert spy.calls == sum(res.record["queries_used"])
    assert all(p.grad is None for p in predictors["regions"].parameters())


@pytest.mark.parametrize("mask", ["brain", "none"])
def test_threat_set_and_input_untouched(mask: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, seed=3)
    before = x.clone()
    res = square(eps=16.0, queries=15, mask=mask).run(predictors["regions"], x, target)
    assert torch.equal(x, before)
    delta = res.x_adv - x
    assert float(delta.abs().max()) <= 16.0 / 255 + 1e-6
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    background = (x == 0).all(dim=1, keepdim=True).expand_as(x)
    if mask == "brain":
        assert torch.equal(res.x_adv[background], x[background])
    else:
        assert bool((res.x_adv[background] != 0).any())


def test_determinism_and_alone_equals_batch(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, mode="labels", seed=4)
    first = square(queries=15, seed=9).run(predictors["labels"], x, target)
    second = square(queries=15, seed=9).run(predictors["labels"], x, target)
    assert torch.equal(first.x_adv, second.x_adv)
    assert first.record["loss_per_query"] == second.record["loss_per_query"]
    alone = square(queries=15, seed=9).run(predictors["labels"], x[1:], target[1:])
    assert torch.equal(alone.x_adv, first.x_adv[1:])
    other = square(queries=15, seed=10).run(predictors["labels"], x, target)
    assert not torch.equal(other.x_adv, first.x_adv)


def test_per_sample_eps(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, seed=5)
    res = square(eps=[2.0, 16.0], queries=10).run(predictors["regions"], x, target)
    linf = (res.x_adv - x).flatten(1).abs().amax(1)
    assert float(linf[0]) <= 2.0 / 255 + 1e-6 and float(linf[1]) <= 16.0 / 255 + 1e-6
    assert float(linf[1]) > 2.0 / 255  # the larger budget is used
    for i, eps in enumerate([2.0, 16.0]):
        alone = square(eps=eps, queries=10).run(predictors["regions"], x[i:i + 1], target[i:i + 1])
        assert torch.equal(alone.x_adv, res.x_adv[i:i + 1])
    assert res.record["threat"]["eps"] == [2.0, 16.0]


def test_zero_eps_stops_after_first_query(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=1)
    spy = Spy(predictors["regions"])
    res = square(eps=0.0, queries=10).run(spy, x, target)
    assert torch.equal(res.x_adv, x) and spy.calls == 1 and res.record["queries_used"] == [1]


def test_loss_curve_monotone_and_final_loss_recomputed(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, seed=6)
    res = square(queries=25).run(predictors["regions"], x, target)
    loss_fn = resolve_loss("auto", "regions")
    with torch.no_grad():
        recomputed = per_sample(loss_fn, predictors["regions"](res.x_adv), target).tolist()
    for i, curve in enumerate(res.record["loss_per_query"]):
        assert len(curve) == res.record["queries_used"][i] == 25
        assert all(b >= a for a, b in itertools.pairwise(curve))
        assert curve[-1] == res.record["final_loss"][i]
        assert curve[-1] == pytest.approx(recomputed[i], rel=1e-6)


def test_raises_loss_above_clean(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, mode="labels", seed=7)
    loss_fn = resolve_loss("auto", "labels")
    with torch.no_grad():
        clean = per_sample(loss_fn, predictors["labels"](x), target)
        res = square(eps=16.0, queries=60).run(predictors["labels"], x, target)
        adv = per_sample(loss_fn, predictors["labels"](res.x_adv), target)
    assert bool((adv > clean).all()), (clean.tolist(), adv.tolist())


def test_snapshot_equals_shorter_run(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, seed=8)
    res = square(queries=20, checkpoints=[1, 6, 20]).run(predictors["regions"], x, target)
    assert isinstance(res, SquareResult) and sorted(res.snapshots) == [1, 6, 20]
    assert res.record["checkpoints"] == [1, 6, 20]
    assert torch.equal(res.snapshots[20], res.x_adv)
    for q in (1, 6):
        short = square(queries=q, schedule_queries=20).run(predictors["regions"], x, target)
        assert torch.equal(res.snapshots[q], short.x_adv)
        assert [c[:q] for c in res.record["loss_per_query"]] == short.record["loss_per_query"]


def test_stripe_start_and_cube_update() -> None:
    """Hand-checkable geometry on a constant volume (no clipping, no mask): the start is ±eps constant along the
    first spatial axis; every accepted update changes one cube of the scheduled side."""

    class Const(torch.nn.Module):
        output_mode = "regions"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 3, *x.shape[2:])

    x = torch.full((1, 2, 8, 8, 8), 0.5)
    target = torch.zeros(1, 3, 8, 8, 8)
    cfg = {"eps": 8.0, "mask": "none", "p_init": 0.2, "seed": 3}
    start = attacks.create("square3d", queries=1, loss=increasing_loss(), **cfg).run(Const(), x, target).x_adv
    delta = (start - x) * 255
    torch.testing.assert_close(delta.abs(), torch.full_like(delta, 8.0), atol=1e-4, rtol=0)
    assert torch.equal(delta, delta[:, :, :1].expand_as(delta))
    assert len(torch.unique(delta.sign())) == 2
    after = attacks.create("square3d", queries=2, schedule_queries=2, loss=increasing_loss(), **cfg)
    moved = after.run(Const(), x, target).x_adv
    changed = (moved != start).any(dim=1)[0].nonzero()
    side = cube_side(0.2, (8, 8, 8))  # round(102.4 ** (1/3)) = 5
    assert side == 5
    assert len(changed) > 0
    extent = changed.max(0).values - changed.min(0).values + 1
    assert bool((extent <= side).all())
    inside = (moved - x)[0][:, changed[:, 0], changed[:, 1], changed[:, 2]]  # (channels, changed voxels)
    assert torch.equal(inside, inside[:, :1].expand_as(inside))  # one ±eps value per channel over the cube


def test_schedule_by_hand() -> None:
    assert schedule_fraction(0.05, 0, 10000) == 0.05
    assert schedule_fraction(0.05, 10, 10000) == 0.05
    assert schedule_fraction(0.05, 11, 10000) == 0.025
    assert schedule_fraction(0.05, 51, 10000) == 0.0125
    assert schedule_fraction(0.05, 9999, 10000) == 0.05 / 512
    assert schedule_fraction(0.4, 5, 100) == 0.4 / 8  # 5 of 100 -> 500 of 10000: passed 10, 50, 200
    assert cube_side(0.05, (16, 16, 16)) == 6  # round(204.8 ** (1/3)) = round(5.89)
    assert cube_side(1e-9, (16, 16, 16)) == 1
    assert cube_side(1.0, (4, 16, 16)) == 4  # never larger than the smallest axis


@pytest.mark.parametrize(("cfg", "names"), [
    ({"queries": 0}, "queries"), ({"queries": 2.5}, "queries"), ({"queries": True}, "queries"),
    ({"p_init": 0.0}, "p_init"), ({"p_init": 1.5}, "p_init"), ({"p_init": "big"}, "p_init"),
    ({"norm": "l2"}, "linf"), ({"checkpoints": [5, 3]}, "checkpoints"), ({"checkpoints": [2, 2]}, "checkpoints"),
    ({"checkpoints": [0]}, "checkpoints"), ({"checkpoints": [13]}, "checkpoints"),
    ({"checkpoints": 4}, "checkpoints"), ({"schedule_queries": 0}, "schedule_queries"), ({"loss": 3}, "loss"),
])
def test_bad_options_are_one_line_config_errors(cfg: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        square(**cfg)
    assert names in str(err.value) and "\n" not in str(err.value)


def test_bad_loss_for_output_mode(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=1)
    with pytest.raises(ConfigError, match="ce"):
        square(loss="ce").run(predictors["regions"], x, target)
