"""The contract every registered defence keeps, in both output modes: the same seed gives the same loss, the inputs
are left untouched, gradients reach the parameters, and the network is back in train mode afterwards; every defence
that trains on an attack's examples crafts them without touching gradients, statistics, mode or flags. A defence
registered without an entry in OPTIONS fails here, so every new defence joins the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from defences.tiny import MODES, assert_crafting_isolated, assert_gradients_flow, make_batch, make_ctx, save_teacher

from volrob import defences
from volrob.defences.adversarial import AttackTraining
from volrob.defences.registry import DEFENCES

OPTIONS: dict[str, dict[str, Any]] = {  # small settings; "teacher" is filled in per test
    "none": {}, "distill_teacher": {"temperature": 3.0}, "distillation": {"temperature": 4.0},
    "pgd_at": {"eps": 4.0, "steps": 2, "clean_weight": 0.5}, "fgsm_rs": {"eps": 4.0, "clean_weight": 0.5},
    "noise": {"sigma": 8.0, "clean_weight": 0.5}, "trades": {"eps": 4.0, "steps": 2},
    "vaft": {"q_max": 20.0, "steps": 2, "clean_weight": 0.5},
}
RANDOM = {"pgd_at", "fgsm_rs", "noise", "trades"}  # draw from the step seed (VAFA has no random start)


def test_every_registered_defence_is_covered() -> None:
    assert set(defences.available()) == set(OPTIONS)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_contract(name: str, mode: str, tmp_path: Path) -> None:
    opts = dict(OPTIONS[name])
    if name == "distillation":
        opts["teacher"] = str(save_teacher(tmp_path / "teacher.pt", mode=mode, temperature=4.0))
    defence = defences.create(name, **opts)
    x, y = make_batch(mode)
    x0, y0 = x.clone(), y.clone()

    def loss(seed: int) -> torch.Tensor:
        ctx = make_ctx(mode)
        defence.setup(ctx)
        ctx.net.train()
        out = defence.batch_loss(ctx, x, y, seed=seed)
        assert ctx.net.training and all(p.requires_grad for p in ctx.net.parameters())
        assert out.parts and all(isinstance(v, float) for v in out.parts.values())
        return out.loss

    a, b, c = loss(1), loss(1), loss(2)
    assert torch.equal(a, b)
    assert torch.equal(a, c) != (name in RANDOM)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    ctx = make_ctx(mode)
    defence.setup(ctx)
    assert_gradients_flow(defence.batch_loss(ctx, x, y, seed=1).loss, ctx)
    assert defence.describe()["name"] == name


ATTACK_TRAINING = sorted(n for n in OPTIONS if isinstance(DEFENCES.entry(n).builder, type)
                         and issubclass(DEFENCES.entry(n).builder, AttackTraining))


def test_attack_training_defences_found() -> None:
    assert {"pgd_at", "fgsm_rs", "vaft"} <= set(ATTACK_TRAINING)


@pytest.mark.parametrize("batchnorm", [True, False])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ATTACK_TRAINING)
def test_crafting_leaves_network_untouched(name: str, mode: str, batchnorm: bool) -> None:
    ctx = make_ctx(mode, batchnorm=batchnorm)
    x, y = make_batch(mode)
    defence = defences.create(name, **OPTIONS[name])
    assert_crafting_isolated(lambda c: defence.craft(c, x, y, 3), ctx)
