"""trades: the KL against direct formulas, crafting isolation and ascent, the loss, seeding, bad options."""

from __future__ import annotations

import copy

import pytest
import torch
from defences.tiny import MODES, assert_crafting_isolated, make_batch, make_ctx

from volrob import defences
from volrob.defences.divergence import output_kl
from volrob.errors import ConfigError


def direct_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, mode: str) -> torch.Tensor:
    """KL written out in float64: Bernoulli per channel summed over channels, or categorical; mean over voxels."""
    p_logits, q_logits = p_logits.double(), q_logits.double()
    if mode == "regions":
        p, q = torch.sigmoid(p_logits), torch.sigmoid(q_logits)
        kl = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    else:
        p, q = torch.softmax(p_logits, 1), torch.softmax(q_logits, 1)
        kl = p * torch.log(p / q)
    return kl.sum(1).mean()


@pytest.mark.parametrize("mode", MODES)
def test_kl_matches_direct_formula(mode: str) -> None:
    gen = torch.Generator().manual_seed(0)
    c = 3 if mode == "regions" else 4
    p, q = torch.randn(2, c, 4, 4, 4, generator=gen) * 3, torch.randn(2, c, 4, 4, 4, generator=gen) * 3
    torch.testing.assert_close(output_kl(p, q, mode).double(), direct_kl(p, q, mode), rtol=1e-5, atol=1e-6)
    assert float(output_kl(p, p, mode)) == pytest.approx(0.0, abs=1e-6)
    assert float(output_kl(p, q, mode)) > 0
    with pytest.raises(ConfigError, match="output mode"):
        output_kl(p, q, "probs")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batchnorm", [True, False])
def test_crafting_isolated_in_budget_and_ascends(mode: str, batchnorm: bool) -> None:
    ctx = make_ctx(mode, batchnorm=batchnorm)
    x, _ = make_batch(mode)
    defence = defences.create("trades", eps=4.0, steps=2)
    assert_crafting_isolated(lambda c: defence.craft(c, x, 1), ctx)
    x_adv = defence.craft(ctx, x, 1)
    assert float((x_adv - x).abs().max()) <= 4 / 255 + 1e-7
    assert torch.equal(x_adv[:, :, :3], x[:, :, :3]) and x_adv.min() >= 0 and x_adv.max() <= 1
    net = copy.deepcopy(ctx.predictor).eval()
    with torch.no_grad():
        clean = net(x)
        start = defences.create("trades", eps=4.0, steps=1, alpha=1e-9).craft(ctx, x, 1)  # ~the random start
        assert output_kl(clean, net(x_adv), mode) > output_kl(clean, net(start), mode)


@pytest.mark.parametrize("mode", MODES)
def test_loss_is_clean_plus_beta_kl(mode: str) -> None:
    ctx = make_ctx(mode)
    ref = copy.deepcopy(ctx)
    x, y = make_batch(mode)
    defence = defences.create("trades", eps=4.0, steps=2, beta=3.0)
    out = defence.batch_loss(ctx, x, y, seed=9)
    x_adv = defence.craft(ref, x, 9)
    z = ref.predictor(x)
    want = ref.loss(z, y) + 3.0 * direct_kl(z, ref.predictor(x_adv), mode)
    torch.testing.assert_close(out.loss.double(), want.double(), rtol=1e-5, atol=1e-6)
    assert set(out.parts) == {"clean", "kl"}


def test_params() -> None:
    assert defences.create("trades", eps=8, steps=4).params() == {"eps": 8.0, "eps_units": "1/255", "steps": 4,
                                                                  "alpha": 5.0, "beta": 6.0}


@pytest.mark.parametrize("bad", [{"eps": 0}, {"steps": 0}, {"alpha": "x"}, {"beta": -1}, {"clean_weight": 0.5}])
def test_bad_options(bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        defences.create("trades", **bad)
