"""Cost model and shard assignment: MONAI's window count as the oracle, every unit on exactly one rank, the
largest units first, cases kept together when that costs nothing, the same plan on every rank."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.inferers import sliding_window_inference

from volrob.engine.cells import Cell, CleanUnit, Unit
from volrob.engine.plan import ModelTiming, assign, attack_passes, time_model, unit_cost, window_count
from volrob.inference.predictor import Predictor, SlidingWindowConfig


@settings(max_examples=60, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 48)] * 3), roi=st.tuples(*[st.integers(2, 24)] * 3),
       overlap=st.sampled_from([0.0, 0.25, 0.5, 0.75]))
def test_window_count_is_monais(shape: tuple[int, int, int], roi: tuple[int, int, int], overlap: float) -> None:
    seen: list[int] = []

    def count(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x

    sliding_window_inference(torch.zeros(1, 1, *shape), roi, 1, count, overlap=overlap)
    assert window_count(shape, roi, overlap) == sum(seen)  # MONAI runs the network once per window


def _cell(name: str, attack: str = "pgd", steps: int = 4, targets: tuple[str, ...] = ("m",)) -> Cell:
    return Cell(name, "m", targets, attack, {"eps": 4, "steps": steps} if attack == "pgd" else {"eps": 4}, "eps", 4)


def test_attack_passes_and_costs() -> None:
    assert attack_passes(_cell("a", steps=7)) == (8, 7)  # exact gradient: one graph-free forward per step, + final
    assert attack_passes(_cell("n", attack="gaussian_noise")) == (0, 0)
    assert attack_passes(Cell("q", "m", ("m",), "square3d", {"queries": 30}, None, None)) == (30, 0)
    t = {"m": ModelTiming(forward_s=0.5, backward_s=2.0, windows=3), "n": ModelTiming(0.1, 0.3, 1)}
    cost = unit_cost(_cell("a", steps=7, targets=("m", "n")), ["m"], t, scorings=2)
    from volrob.engine.plan import SCORING_OVERHEAD_S as S

    assert cost == pytest.approx((8 * 0.5 + 7 * 2.0) * 3 + 2 * (0.5 * 3 + S) + 2 * (0.1 * 1 + S))


def test_time_model_measures_one_window() -> None:
    net = torch.nn.Conv3d(4, 3, 3, padding=1).eval()
    p = Predictor(net, mean=[0.0] * 4, std=[1.0] * 4, window=SlidingWindowConfig(roi_size=(8, 8, 8), overlap=0.5))
    t = time_model(p, 4, (20, 8, 8), torch.device("cpu"))
    assert t.forward_s > 0 and t.backward_s > 0 and t.windows == window_count((20, 8, 8), (8, 8, 8), 0.5) == 4


@settings(max_examples=40, deadline=None)
@given(costs=st.lists(st.floats(0.1, 100.0), min_size=1, max_size=40), cases=st.integers(1, 6),
       world=st.integers(1, 5))
def test_assign_covers_everything_once_and_balances(costs: list[float], cases: int, world: int) -> None:
    units = [Unit(_cell(f"c{i}"), f"case{i % cases}") for i in range(len(costs))]
    cleans = [CleanUnit("m", f"case{j}") for j in range(cases)]
    cost = {u.key: c for u, c in zip(units, costs, strict=True)} | {c.key: 0.5 for c in cleans}
    case_cost = {f"case{j}": 1.0 for j in range(cases)}
    shards = assign(units, cleans, cost, case_cost, world)
    assert shards == assign(list(reversed(units)), list(reversed(cleans)), cost, case_cost, world)  # order-free
    got = [u.key for s in shards for u in s[0]]
    assert sorted(got) == sorted(u.key for u in units)
    assert sorted(c.key for s in shards for c in s[1]) == sorted(c.key for c in cleans)
    for s in shards:  # largest first on every rank
        mine = [cost[u.key] for u in s[0]]
        assert mine == sorted(mine, reverse=True)
        held = {u.case for u in s[0]}
        # a clean unit goes to a rank that already holds attack units of its case, when any rank does
        assert all(c.case in held for c in s[1] if c.case in {u.case for u in units})
    loads = [sum(cost[u.key] for u in s[0]) for s in shards]
    bound = sum(costs) / world + max(costs) + cases * 1.0  # greedy LPT with case set-up costs
    assert max(loads) <= bound + 1e-9


def test_assign_keeps_a_case_together_unless_splitting_pays() -> None:
    units = [Unit(_cell("big"), "a")] + [Unit(_cell(f"small{i}"), "b") for i in range(3)]
    cost = {units[0].key: 10.0} | {u.key: 1.0 for u in units[1:]}
    shards = assign(units, [], cost, {"a": 3.0, "b": 3.0}, 2)
    assert [{u.case for u in s[0]} for s in shards] == [{"a"}, {"b"}]  # b's set-up is paid once
    heavy = {u.key: 10.0 for u in units}
    split = assign(units, [], heavy, {"a": 0.0, "b": 0.0}, 2)
    assert sorted(len(s[0]) for s in split) == [2, 2]  # free set-up: plain balance
