"""noise: the noisy batch against a direct computation, brain-only noise in [0, 1], the loss, seeding, bad options."""

from __future__ import annotations

import copy

import pytest
import torch
from defences.tiny import MODES, assert_gradients_flow, make_batch, make_ctx

from volrob import defences
from volrob.errors import ConfigError


def test_noise_matches_direct_draw_and_stays_in_brain() -> None:
    x, _ = make_batch()
    x[0, :, 5, 5, 5] = 0.999  # a voxel that noise pushes above 1 must be clipped
    noisy = defences.create("noise", sigma=8.0).perturb(x, 11)
    draw = torch.randn(x.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    brain = (x != 0).any(1, keepdim=True)
    want = torch.where(brain, (x.double() + draw * 8 / 255).clamp(0, 1), x.double()).float()
    torch.testing.assert_close(noisy, want, atol=1e-6, rtol=0)
    assert torch.equal(noisy[:, :, :3], torch.zeros_like(noisy[:, :, :3]))
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert not torch.equal(noisy[0], noisy[1] - x[1] + x[0])  # samples get different noise


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clean_weight", [0.0, 0.25])
def test_loss_and_seeding(mode: str, clean_weight: float) -> None:
    ctx = make_ctx(mode)
    ref = copy.deepcopy(ctx)
    x, y = make_batch(mode)
    defence = defences.create("noise", sigma=6, clean_weight=clean_weight)
    out = defence.batch_loss(ctx, x, y, seed=3)
    noisy = defence.perturb(x, 3)
    want = clean_weight * ref.loss(ref.predictor(x), y) + (1 - clean_weight) * ref.loss(ref.predictor(noisy), y)
    torch.testing.assert_close(out.loss, want)
    assert torch.equal(out.loss, defence.batch_loss(make_ctx(mode), x, y, seed=3).loss)
    assert not torch.equal(out.loss, defence.batch_loss(make_ctx(mode), x, y, seed=4).loss)
    assert_gradients_flow(out.loss, ctx)


def test_params() -> None:
    assert defences.create("noise").params() == {"sigma": 8.0, "sigma_units": "1/255", "clean_weight": 0.0}


@pytest.mark.parametrize("bad", [{"sigma": 0}, {"sigma": "8"}, {"clean_weight": -1}, {"eps": 4}])
def test_bad_options(bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        defences.create("noise", **bad)
