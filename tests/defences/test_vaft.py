"""vaft: the frequency-consistency loss against scipy's DCT, which side is detached, crafting isolation, the loss
on the vafa3d attack's own examples, seeding, bad options."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.fft
import torch
from defences.tiny import MODES, make_batch, make_ctx

from volrob import attacks, defences
from volrob.defences.vaft import frequency_consistency
from volrob.errors import ConfigError

OPTS = {"steps": 2, "block_size": 8, "q_max": 20.0}


def test_frequency_loss_matches_scipy() -> None:
    gen = torch.Generator().manual_seed(0)
    zc, za = torch.randn(2, 3, 5, 6, 7, generator=gen), torch.randn(2, 3, 5, 6, 7, generator=gen)
    dc = scipy.fft.dctn(zc.double().numpy(), type=2, norm="ortho", axes=(2, 3, 4))
    da = scipy.fft.dctn(za.double().numpy(), type=2, norm="ortho", axes=(2, 3, 4))
    want = np.mean([np.abs(dc[i] - da[i]).sum() / np.abs(dc[i]).sum() for i in range(2)])
    assert float(frequency_consistency(zc, za)) == pytest.approx(want, rel=1e-5)
    assert float(frequency_consistency(zc, zc)) == 0.0


def test_clean_side_is_detached() -> None:
    gen = torch.Generator().manual_seed(1)
    zc = torch.randn(1, 3, 4, 4, 4, generator=gen).requires_grad_(True)
    za = torch.randn(1, 3, 4, 4, 4, generator=gen).requires_grad_(True)
    frequency_consistency(zc, za).backward()
    assert zc.grad is None and za.grad is not None and za.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clean_weight", [0.0, 0.4])
def test_loss_on_the_attacks_own_examples(mode: str, clean_weight: float) -> None:
    ctx = make_ctx(mode)
    ref = copy.deepcopy(ctx)
    x, y = make_batch(mode)
    out = defences.create("vaft", **OPTS, freq_weight=0.7, clean_weight=clean_weight).batch_loss(ctx, x, y, seed=0)
    x_adv = attacks.create("vafa3d", steps=2, block=8, q_max=20.0, loss=ref.loss)(ref.predictor, x, y).x_adv
    assert not torch.equal(x_adv, x)
    ref.predictor.train()
    za, zc = ref.predictor(x_adv), ref.predictor(x)
    dc = scipy.fft.dctn(zc.detach().double().numpy(), type=2, norm="ortho", axes=(2, 3, 4))
    da = scipy.fft.dctn(za.detach().double().numpy(), type=2, norm="ortho", axes=(2, 3, 4))
    freq = np.mean([np.abs(dc[i] - da[i]).sum() / np.abs(dc[i]).sum() for i in range(2)])
    want = clean_weight * ref.loss(zc, y) + (1 - clean_weight) * ref.loss(za, y) + 0.7 * freq
    assert float(out.loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    assert out.parts["frequency"] == pytest.approx(freq, rel=1e-5)


def test_params() -> None:
    assert defences.create("vaft").params() == {"q_max": 20.0, "steps": 20, "block_size": None, "freq_weight": 1.0,
                                                "clean_weight": 0.0}


@pytest.mark.parametrize("bad", [{"q_max": 0}, {"q_max": 2}, {"steps": 0}, {"block_size": 0}, {"block_size": 2.5},
                                 {"freq_weight": -1}, {"clean_weight": 3}, {"eps": 4}])
def test_bad_options(bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        defences.create("vaft", **bad)
