"""pgd_at: crafting isolation, the loss against the pgd attack's own x_adv, seeding, gradients, bad options."""

from __future__ import annotations

import copy

import pytest
import torch
from defences.tiny import MODES, make_batch, make_ctx

from volrob import attacks, defences
from volrob.errors import ConfigError

OPTS = {"eps": 4.0, "steps": 2}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clean_weight", [0.0, 0.3])
def test_loss_is_weighted_sum_on_the_attacks_own_examples(mode: str, clean_weight: float) -> None:
    ctx = make_ctx(mode)
    ref_ctx = copy.deepcopy(ctx)
    x, y = make_batch(mode)
    out = defences.create("pgd_at", **OPTS, clean_weight=clean_weight).batch_loss(ctx, x, y, seed=5)
    attack = attacks.create("pgd", eps=4.0, steps=2, alpha=2.5 * 4.0 / 2, random_start=True, loss=ref_ctx.loss,
                            seed=5)
    x_adv = attack(ref_ctx.predictor, x, y).x_adv
    ref_ctx.predictor.train()
    adv = ref_ctx.loss(ref_ctx.predictor(x_adv), y)
    clean = ref_ctx.loss(ref_ctx.predictor(x), y)
    torch.testing.assert_close(out.loss, clean_weight * clean + (1 - clean_weight) * adv)
    assert out.parts["adversarial"] == pytest.approx(float(adv.detach()))
    assert ("clean" in out.parts) == (clean_weight > 0)
    assert float((x_adv - x).abs().max()) <= 4.0 / 255 + 1e-7 and not torch.equal(x_adv, x)


def test_params_and_default_alpha() -> None:
    p = defences.create("pgd_at").describe()
    assert p == {"name": "pgd_at", "params": {"eps": 4.0, "eps_units": "1/255", "steps": 3, "alpha": 2.5 * 4 / 3,
                                              "norm": "linf", "random_start": True, "clean_weight": 0.0}}


@pytest.mark.parametrize("bad", [{"eps": 0}, {"eps": "4"}, {"steps": 0}, {"steps": 1.5}, {"alpha": -1},
                                 {"norm": "l1"}, {"random_start": 1}, {"clean_weight": 1.5},
                                 {"clean_weight": -0.1}, {"bogus": 1}])
def test_bad_options(bad: dict) -> None:
    name = next(iter(bad))
    with pytest.raises(ConfigError, match=name):
        defences.create("pgd_at", **bad)
