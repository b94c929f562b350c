"""Stateless, re-entrant attacks: a call leaves the attack object as it was (also in the middle of the call), and
one object serves two threads at once with exactly the results of sequential calls."""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch

import volrob.attacks as attacks
from volrob.attacks.base import AttackResult
from volrob.attacks.loop import eval_mode

NAMES = attacks.available()
EPS = [4.0, 12.0]  # per sample: each sample runs under its own threat model, the state that used to be swapped


def same(a: Any, b: Any) -> bool:
    """Deep equality; tensors must be equal in dtype and value, floats NaN-aware, callables identical."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    if callable(a) and not isinstance(a, type):
        return a is b
    return type(a) is type(b) and a == b


def outcome(res: AttackResult) -> dict[str, Any]:
    """Everything a result holds except the wall-clock time."""
    out = {k: v for k, v in vars(res).items() if k != "record"}
    out["record"] = {k: v for k, v in res.record.items() if k != "seconds"}
    return out


@pytest.mark.parametrize("mode", ["regions", "labels"])
@pytest.mark.parametrize("name", NAMES)
def test_a_call_leaves_the_attack_unchanged(name: str, mode: str, predictors: Any, inputs: Any, cheap: Any) -> None:
    attack = cheap(name, eps=EPS)
    before = copy.deepcopy(vars(attack))
    checked: list[int] = []

    def progress(done: int, total: int) -> None:  # in the middle of the call too, not only after it
        assert same(vars(attack), before), (name, done)
        checked.append(done)

    x, target = inputs(batch=2, mode=mode, seed=1)
    attack(predictors[mode], x, target, progress=progress)
    assert checked and same(vars(attack), before)
    attack(predictors[mode], x, target)
    assert same(vars(attack), before)


@pytest.mark.parametrize("name", NAMES)
def test_two_threads_share_one_attack(name: str, predictors: Any, inputs: Any, cheap: Any) -> None:
    """Both threads wait for each other after every unit of work, so their calls interleave step by step."""
    mode = "regions"
    attack = cheap(name, eps=EPS)
    data = [inputs(batch=2, mode=mode, seed=s) for s in (11, 12)]
    sequential = [outcome(attack(predictors[mode], x, t)) for x, t in data]
    lockstep = threading.Barrier(2, timeout=120)

    def call(x: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        try:
            return outcome(attack(predictors[mode], x, target, progress=lambda done, total: lockstep.wait()))
        except BaseException:
            lockstep.abort()  # never leave the other thread waiting
            raise

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(call, x, t) for x, t in data]
        concurrent = [f.result() for f in futures]
    for seq, con in zip(sequential, concurrent, strict=True):
        assert same(seq, con), name
    assert not same(sequential[0]["x_adv"], sequential[1]["x_adv"])  # two different inputs, two different results


def test_overlapping_eval_mode_restores_training_when_the_last_block_ends() -> None:
    module = torch.nn.Linear(2, 2).train()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with eval_mode(module):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with eval_mode(module):
            second_in.set()
            first_out.wait(10)
            seen["after_first_left"] = module.training

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"after_first_left": False}  # still in eval mode while the second block runs
    assert module.training  # restored once both ended
    with eval_mode(module):
        assert not module.training
    assert module.training
