"""fgsm_rs: crafting isolation, x_adv equal to a hand-written FGSM with random start (Wong et al. 2020), the loss,
seeding, gradients, bad options."""

from __future__ import annotations

import copy

import pytest
import torch
from defences.tiny import MODES, make_batch, make_ctx

from volrob import defences
from volrob.defences.base import TrainContext
from volrob.errors import ConfigError


def fast_at_reference(ctx: TrainContext, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float,
                      seed: int) -> torch.Tensor:
    """delta ~ U(-eps, eps) on brain voxels (each sample the draw of the attack's generator seed), kept in [0, 1];
    one step ``delta += alpha * sign(grad)``; delta clipped to [-eps, eps] and x + delta to [0, 1]."""
    e, a = eps / 255, alpha / 255
    net = copy.deepcopy(ctx.predictor).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    out = []
    for i in range(x.shape[0]):
        xi, yi = x[i:i + 1], y[i:i + 1]
        brain = (xi != 0).any(1, keepdim=True).to(xi.dtype)
        gen = torch.Generator().manual_seed(seed * 1000003)
        delta = ((torch.rand(xi.shape, generator=gen, dtype=torch.float64) * 2 - 1) * e).float() * brain
        start = (xi + delta).clamp(0, 1).requires_grad_(True)
        (grad,) = torch.autograd.grad(ctx.loss(net(start), yi), start)
        delta = (start.detach() + a * (grad * brain).sign() - xi).clamp(-e, e) * brain
        out.append((xi + delta).clamp(0, 1))
    return torch.cat(out)


@pytest.mark.parametrize("mode", MODES)
def test_examples_equal_hand_written_fast_at(mode: str) -> None:
    ctx = make_ctx(mode)
    x, y = make_batch(mode)
    defence = defences.create("fgsm_rs", eps=4.0)
    x_adv = defence.craft(ctx, x, y, 7)
    ref = fast_at_reference(ctx, x, y, 4.0, 5.0, 7)
    torch.testing.assert_close(x_adv, ref, atol=1e-6, rtol=0)
    assert float((x_adv - x).abs().max()) <= 4 / 255 + 1e-7
    assert torch.equal(x_adv[:, :, :3], x[:, :, :3])  # background untouched


@pytest.mark.parametrize("clean_weight", [0.0, 0.5])
def test_loss_mixes_clean_and_adversarial(clean_weight: float) -> None:
    ctx = make_ctx()
    ref = copy.deepcopy(ctx)
    x, y = make_batch()
    out = defences.create("fgsm_rs", eps=4.0, clean_weight=clean_weight).batch_loss(ctx, x, y, seed=2)
    x_adv = fast_at_reference(ref, x, y, 4.0, 5.0, 2)
    want = clean_weight * ref.loss(ref.predictor(x), y) + (1 - clean_weight) * ref.loss(ref.predictor(x_adv), y)
    torch.testing.assert_close(out.loss, want, atol=1e-5, rtol=1e-5)


def test_params() -> None:
    assert defences.create("fgsm_rs", eps=8).params() == {"eps": 8.0, "eps_units": "1/255", "alpha": 10.0,
                                                           "clean_weight": 0.0}


@pytest.mark.parametrize("bad", [{"eps": -1}, {"eps": None}, {"alpha": 0}, {"clean_weight": 2}, {"steps": 3}])
def test_bad_options(bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        defences.create("fgsm_rs", **bad)
