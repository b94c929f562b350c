"""Universal perturbations: tiling, application inside the threat model, learning, and the two attacks of the
universal experiment (``universal``: the learned delta tiled over a volume; ``sign_noise``: its random-sign
control of the same L-inf budget)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from volrob import attacks
from volrob.attacks.losses import resolve_loss
from volrob.attacks.threat import ThreatModel
from volrob.attacks.universal import apply_universal, delta_sha256, learn_universal, tile_delta
from volrob.attacks.universal.perturbation import shifted_delta
from volrob.data.labels import canonical_to_regions
from volrob.errors import ConfigError
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.models import create as create_model

ROI = (16, 16, 16)


def _unet() -> Predictor:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create_model("unet", in_channels=4, out_channels=3, roi_size=ROI, preset="tiny")
    return Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=SlidingWindowConfig(roi_size=ROI)).eval()


def _bn_predictor() -> Predictor:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = nn.Sequential(nn.Conv3d(4, 6, 3, padding=1), nn.BatchNorm3d(6), nn.ReLU(), nn.InstanceNorm3d(
            6, affine=True, track_running_stats=True), nn.Conv3d(6, 3, 1))
    return Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=SlidingWindowConfig(roi_size=ROI))


class _Counting(nn.Module):
    """A predictor stand-in that counts its forward passes (the model-free attacks must make none)."""

    output_mode = "regions"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.zeros((x.shape[0], 3, *x.shape[2:]))


def _cases(n: int = 2, shape: tuple[int, int, int] = (19, 18, 17), seed: int = 0) -> tuple[list, list]:
    gen = torch.Generator().manual_seed(seed)
    vols, tgts = [], []
    for _ in range(n):
        x = torch.rand(4, *shape, generator=gen) * 0.9 + 0.05
        x[:, :2] = 0.0  # background slab
        lab = torch.randint(0, 4, (1, *shape), generator=gen)
        lab[:, :2] = 0
        vols.append(x)
        tgts.append(canonical_to_regions(lab[None])[0].float())
    return vols, tgts


def _batch() -> torch.Tensor:
    x = torch.rand(3, 2, 6, 7, 5, generator=torch.Generator().manual_seed(2))
    x[:, :, :2] = 0.0
    x[0, 0, 4, 4, 4] = 1.0  # at the top of the range
    return x


def _target(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros((x.shape[0], 3, *x.shape[2:]))


# --- tiling -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7, 9, 5), (2, 3, 11), (3, 4, 5), (1, 1, 1)])
def test_tile_delta_matches_numpy_tile(shape: tuple[int, int, int]) -> None:
    delta = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    reps = (1, *(-(-s // r) + 1 for s, r in zip(shape, delta.shape[1:], strict=True)))
    want = np.tile(delta.numpy(), reps)[:, :shape[0], :shape[1], :shape[2]]
    got = tile_delta(delta, shape)
    assert tuple(got.shape) == (2, *shape)
    np.testing.assert_array_equal(got.numpy(), want)


def test_tile_delta_by_hand() -> None:
    delta = torch.arange(2.0).view(1, 2, 1, 1)
    assert tile_delta(delta, (5, 1, 2))[0, :, 0, 0].tolist() == [0, 1, 0, 1, 0]
    assert tile_delta(delta, (5, 1, 2))[0, :, 0, 1].tolist() == [0, 1, 0, 1, 0]


def test_shifted_delta_is_the_tiled_crop() -> None:
    delta = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    tiled = tile_delta(delta, (20, 20, 20))
    for o in [(0, 0, 0), (1, 2, 3), (5, 7, 11), (3, 4, 5)]:
        crop = tiled[:, o[0]:o[0] + 3, o[1]:o[1] + 4, o[2]:o[2] + 5]
        torch.testing.assert_close(shifted_delta(delta, o), crop, rtol=0, atol=0)


@pytest.mark.parametrize("delta,shape", [
    (torch.zeros(3, 3, 3), (4, 4, 4)), (torch.zeros(1, 3, 3, 3, dtype=torch.long), (4, 4, 4)),
    (torch.zeros(1, 3, 3, 3), (4, 4)), (torch.zeros(1, 3, 3, 3), (4, 0, 4)), ([0.0], (4, 4, 4)),
    (torch.zeros(1, 3, 0, 3), (4, 4, 4)),
])
def test_tile_delta_bad_input(delta: object, shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="delta|shape"):
        tile_delta(delta, shape)  # type: ignore[arg-type]


# --- applying -----------------------------------------------------------------------------------------------------

def test_apply_universal_threat_properties() -> None:
    x = _batch()
    before = x.clone()
    delta = torch.randn(2, 4, 3, 2, generator=torch.Generator().manual_seed(3)) * 0.2  # well outside the ball
    adv = apply_universal(x, delta, ThreatModel(eps=8))
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    background = (x == 0).all(dim=1, keepdim=True).expand_as(x)
    assert torch.equal(adv[background], x[background])
    # independent oracle: numpy tiling, mask, clip to the ball, clip to the range
    tiled = np.tile(delta.numpy(), (1, 2, 4, 3))[:, :6, :7, :5]
    mask = (x.numpy() != 0).any(axis=1, keepdims=True)
    want = np.clip(x.numpy() + np.clip(tiled[None] * mask, -8 / 255, 8 / 255), 0, 1)
    np.testing.assert_allclose(adv.numpy(), want, atol=1e-6)


def test_apply_universal_batch_consistent_and_mask_none() -> None:
    x, delta = _batch(), torch.full((2, 4, 3, 2), 0.01)
    threat = ThreatModel(eps=4)
    whole = apply_universal(x, delta, threat)
    alone = torch.cat([apply_universal(x[i:i + 1], delta, threat) for i in range(3)])
    torch.testing.assert_close(whole, alone, rtol=0, atol=0)
    free = apply_universal(x, delta, ThreatModel(eps=4, mask="none"))
    torch.testing.assert_close(free[:, :, :2], torch.full_like(free[:, :, :2], 0.01))


@pytest.mark.parametrize("kwargs,match", [
    ({"threat": ThreatModel(eps=8, norm="l2")}, "L-inf"), ({"threat": 8}, "L-inf"),
    ({"delta": torch.zeros(3, 4, 3, 2)}, "channels"), ({"x": torch.zeros(2, 6, 7, 5)}, "x must be"),
    ({"threat": ThreatModel(eps=(1.0, 2.0))}, "per-sample"),
])
def test_apply_universal_bad_input(kwargs: dict, match: str) -> None:
    args = {"x": _batch(), "delta": torch.zeros(2, 4, 3, 2), "threat": ThreatModel(eps=8), **kwargs}
    with pytest.raises(ConfigError, match=match):
        apply_universal(args["x"], args["delta"], args["threat"])


# --- learning -----------------------------------------------------------------------------------------------------

def _mean_loss(predictor: Predictor, vols: list, tgts: list, delta: torch.Tensor | None) -> float:
    loss = resolve_loss("auto", "regions")
    total = 0.0
    with torch.no_grad():
        for v, t in zip(vols, tgts, strict=True):
            x = v[None] if delta is None else apply_universal(v[None], delta, ThreatModel(eps=8))
            total += float(loss(predictor(x), t[None]))
    return total / len(vols)


def test_learning_is_deterministic_within_budget_and_raises_the_loss() -> None:
    predictor, (vols, tgts) = _unet(), _cases()
    opts: dict[str, Any] = {"eps": 8, "roi": ROI, "epochs": 3, "crops_per_case": 2, "step": 2, "seed": 5}
    delta, record = learn_universal(predictor, vols, tgts, **opts)
    again, _ = learn_universal(predictor, vols, tgts, **opts)
    assert torch.equal(delta, again)
    other, _ = learn_universal(predictor, vols, tgts, **{**opts, "seed": 6})
    assert not torch.equal(delta, other)  # the seed draws the case order and the crops
    assert tuple(delta.shape) == (4, *ROI)
    assert delta.abs().max() <= 8 / 255 + 1e-7
    assert record["seed"] == 5 and len(record["epoch_loss"]) == 3
    assert record["params"]["roi"] == list(ROI) and record["params"]["eps"] == 8
    assert record["linf_255"] == pytest.approx(float(delta.abs().max()) * 255)
    # measured on whole volumes with the sliding window (not the crops it was learned on)
    assert _mean_loss(predictor, vols, tgts, delta) > _mean_loss(predictor, vols, tgts, None)


def test_learning_pads_volumes_smaller_than_the_roi() -> None:
    vols, tgts = _cases(n=1, shape=(12, 17, 16))
    delta, _ = learn_universal(_unet(), vols, tgts, eps=2, roi=ROI, epochs=1, crops_per_case=1, step=1, seed=0)
    assert tuple(delta.shape) == (4, *ROI) and delta.abs().max() <= 2 / 255 + 1e-7


def test_learning_leaves_the_network_alone() -> None:
    predictor = _bn_predictor().train()
    state = {k: v.clone() for k, v in predictor.state_dict().items()}
    vols, tgts = _cases()
    learn_universal(predictor, vols, tgts, eps=8, epochs=1, crops_per_case=1, step=1, seed=0)
    assert predictor.training and predictor.network[1].training
    assert all(p.grad is None for p in predictor.parameters())
    for k, v in predictor.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("kwargs,match", [
    ({"eps": -1}, "eps"), ({"eps": [1, 2]}, "one number"), ({"epochs": 0}, "epochs"),
    ({"crops_per_case": 0}, "crops_per_case"), ({"step": 0}, "step"), ({"seed": 1.5}, "seed"),
    ({"roi": (16, 16)}, "roi"), ({"roi": (16, 0, 16)}, "roi"), ({"loss": "ce"}, "loss"),
])
def test_learning_bad_options(kwargs: dict, match: str) -> None:
    vols, tgts = _cases(n=1)
    opts = {"eps": 8, "epochs": 1, "crops_per_case": 1, "step": 1, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        learn_universal(_unet(), vols, tgts, **opts)


@pytest.mark.parametrize("which", ["empty", "count", "target_shape", "channels", "ndim"])
def test_learning_bad_cases(which: str) -> None:
    vols, tgts = _cases(n=2)
    if which == "empty":
        vols, tgts = [], []
    elif which == "count":
        tgts = tgts[:1]
    elif which == "target_shape":
        tgts[1] = tgts[1][:1]
    elif which == "channels":
        vols[1] = vols[1][:3]
    else:
        vols[0] = vols[0][0]
    with pytest.raises(ConfigError, match="learn_universal"):
        learn_universal(_unet(), vols, tgts, eps=8, epochs=1, crops_per_case=1, step=1, seed=0)


# --- the attacks of the universal experiment ----------------------------------------------------------------------

def test_universal_attack_is_apply_universal_and_never_queries() -> None:
    x = _batch()
    delta = torch.randn(2, 4, 3, 2, generator=torch.Generator().manual_seed(4)) * 0.05
    model = _Counting()
    res = attacks.create("universal", delta=delta, eps=8, seed=3).run(model, x, _target(x))
    torch.testing.assert_close(res.x_adv, apply_universal(x, delta, ThreatModel(eps=8)), rtol=0, atol=0)
    assert model.calls == 0 and res.record["loss"] == []
    assert res.record["params"]["delta_sha256"] == delta_sha256(delta)
    assert res.record["params"]["delta_shape"] == [2, 4, 3, 2]
    assert res.record["params"]["linf_255"] == pytest.approx(float(delta.abs().max()) * 255)
    other_seed = attacks.create("universal", delta=delta, eps=8, seed=99).run(model, x, _target(x)).x_adv
    assert torch.equal(other_seed, res.x_adv)  # nothing random: the seed changes nothing
    kept = res.x_adv.clone()
    atk = attacks.create("universal", delta=delta, eps=8)
    delta.mul_(0)  # the attack holds its own copy of the perturbation
    assert torch.equal(atk.run(model, x, _target(x)).x_adv, kept)


def test_universal_attack_budget_and_region() -> None:
    x = _batch()
    delta = torch.full((2, 4, 3, 2), 0.2)  # far outside every ball below
    for eps in (2.0, 8.0):
        adv = attacks.create("universal", delta=delta, eps=eps).run(_Counting(), x, _target(x)).x_adv
        brain = (x != 0).any(dim=1, keepdim=True).expand_as(x)
        inside = brain & (x < 1 - eps / 255)
        torch.testing.assert_close((adv - x)[inside], torch.full_like(x[inside], eps / 255))
        assert torch.equal(adv[~brain], x[~brain])
    free = attacks.create("universal", delta=delta, eps=8, mask="none").run(_Counting(), x, _target(x)).x_adv
    torch.testing.assert_close(free[:, :, :2], torch.full_like(free[:, :, :2], 8 / 255))


@pytest.mark.parametrize("kwargs,match", [
    ({"norm": "l2"}, "L-inf"), ({"delta": torch.zeros(4, 3, 2)}, "delta"),
    ({"delta": torch.zeros(3, 4, 3, 2)}, "channels"),
])
def test_universal_attack_bad_input(kwargs: dict, match: str) -> None:
    opts = {"delta": torch.zeros(2, 4, 3, 2), "eps": 8, **kwargs}
    x = _batch()
    with pytest.raises(ConfigError, match=match):
        attacks.create("universal", **opts).run(_Counting(), x, _target(x))


def test_sign_noise_is_plus_or_minus_eps_inside_the_brain_mask() -> None:
    x = _batch()
    model = _Counting()
    res = attacks.create("sign_noise", eps=4, seed=7).run(model, x, _target(x))
    adv = res.x_adv
    assert model.calls == 0 and res.record["params"]["amplitude"] == 4
    brain = (x != 0).any(dim=1, keepdim=True).expand_as(x)
    inside = brain & (x > 4 / 255) & (x < 1 - 4 / 255)  # away from the range's ends, nothing is clipped
    torch.testing.assert_close((adv - x).abs()[inside], torch.full_like(x[inside], 4 / 255), rtol=0, atol=1e-6)
    assert 0.4 < float(((adv - x)[inside] > 0).float().mean()) < 0.6  # both signs, about equally often
    assert torch.equal(adv[~brain], x[~brain])
    assert adv.min() >= 0 and adv.max() <= 1 and (adv - x).abs().max() <= 4 / 255 + 1e-6
    both = inside[0] & inside[1]  # every sample gets the same draw of signs
    assert both.any() and torch.equal(torch.sign(adv - x)[0][both], torch.sign(adv - x)[1][both])


def test_sign_noise_seeds_and_per_sample_budgets() -> None:
    x = _batch()
    same = [attacks.create("sign_noise", eps=4, seed=7).run(_Counting(), x, _target(x)).x_adv for _ in range(2)]
    assert torch.equal(*same)
    other = attacks.create("sign_noise", eps=4, seed=8).run(_Counting(), x, _target(x)).x_adv
    assert not torch.equal(other, same[0])
    alone = attacks.create("sign_noise", eps=4, seed=7).run(_Counting(), x[1:2], _target(x[1:2])).x_adv
    torch.testing.assert_close(alone, same[0][1:2], rtol=0, atol=0)  # a sample's noise does not depend on the batch
    per = attacks.create("sign_noise", eps=[2, 4, 8], seed=7).run(_Counting(), x, _target(x)).x_adv
    for i, eps in enumerate((2, 4, 8)):
        inside = (x[i] != 0).any(0, keepdim=True).expand_as(x[i]) & (x[i] > eps / 255) & (x[i] < 1 - eps / 255)
        torch.testing.assert_close((per[i] - x[i]).abs()[inside], torch.full_like(x[i][inside], eps / 255),
                                   rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="L-inf"):
        attacks.create("sign_noise", eps=4, norm="l2")
