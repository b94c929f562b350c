"""Pixel-space attacks against hand computations and on a real tiny network; bad parameters."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import volrob.attacks as attacks
from volrob.attacks.losses import resolve_loss
from volrob.attacks.noise import GaussianNoise
from volrob.attacks.threat import ThreatModel
from volrob.attacks.voxel_losses import segpgd_lambda, segpgd_loss
from volrob.errors import ConfigError


def _dice(pred: torch.Tensor, ref: torch.Tensor) -> float:
    inter = (pred & ref).sum().item()
    total = pred.sum().item() + ref.sum().item()
    return 1.0 if total == 0 else 2 * inter / total


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_fgsm_equals_hand_computation(norm: str, mode: str, predictors: Any, inputs: Any) -> None:
    pred = predictors[mode]
    x, target = inputs(batch=1, mode=mode, seed=7)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(resolve_loss("auto", mode)(pred(xr), target), xr)
    brain = (x != 0).any(1, keepdim=True).float()
    g = grad * brain
    step = g.sign() if norm == "linf" else g / g.norm()
    want = (x + 8 / 255 * step).clamp(0, 1)
    got = attacks.create("fgsm", eps=8, norm=norm).run(pred, x, target).x_adv
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_pgd_without_steps_or_start_returns_x(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2)
    res = attacks.create("pgd", eps=8, steps=0, random_start=False).run(predictors["regions"], x, target)
    assert torch.equal(res.x_adv, x) and res.record["loss"] == []


@pytest.mark.parametrize("mode", ["regions", "labels"])
@pytest.mark.parametrize("name", ["pgd", "segpgd", "cospgd", "bim"])
def test_attack_lowers_dice_and_raises_loss(name: str, mode: str, predictors: Any, inputs: Any) -> None:
    """Target = the network's own clean prediction, so clean Dice is 1; the attack must break it."""
    from volrob.data.labels import logits_to_regions

    pred = predictors[mode]
    x, _ = inputs(batch=2, mode=mode, seed=11)
    with torch.no_grad():
        clean = pred(x)
    target = torch.sigmoid(clean).gt(0.5).float() if mode == "regions" else clean.argmax(1, keepdim=True)
    res = attacks.create(name, eps=8, steps=5, seed=0).run(pred, x, target)
    with torch.no_grad():
        adv = pred(res.x_adv)
    loss_fn = resolve_loss("auto", mode)
    assert float(loss_fn(adv, target)) > float(loss_fn(clean, target))
    ref, got = logits_to_regions(clean, mode), logits_to_regions(adv, mode)
    assert sum(_dice(got[b], ref[b]) for b in range(2)) / 2 < 0.9


def test_restarts_never_worse_than_one_run(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, seed=3)
    one = attacks.create("pgd", eps=4, steps=2, restarts=1, seed=9).run(predictors["regions"], x, target)
    three = attacks.create("pgd", eps=4, steps=2, restarts=3, seed=9).run(predictors["regions"], x, target)
    assert all(b >= a for a, b in zip(one.record["final_loss"], three.record["final_loss"], strict=True))
    assert len(three.record["loss"]) == 6
    loss_fn = resolve_loss("auto", "regions")
    with torch.no_grad():
        recomputed = [float(loss_fn(predictors["regions"](three.x_adv[b:b + 1]), target[b:b + 1])) for b in range(2)]
    assert recomputed == pytest.approx(three.record["final_loss"], rel=1e-5)


@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_targeted_attack_lowers_loss_to_target(mode: str, predictors: Any, inputs: Any) -> None:
    pred = predictors[mode]
    x, target = inputs(batch=2, mode=mode, seed=5)
    res = attacks.create("targeted_bim", eps=16, steps=5).run(pred, x, target)
    loss_fn = resolve_loss("auto", mode)
    with torch.no_grad():
        assert float(loss_fn(pred(res.x_adv), target)) < float(loss_fn(pred(x), target))
    assert res.record["targeted"] is True and res.record["loss"][-1] < res.record["loss"][0]


def test_segpgd_objective_follows_lambda_schedule(predictors: Any, inputs: Any) -> None:
    attack = attacks.create("segpgd", steps=4)
    ctx = attack.prepare(predictors["regions"], 2)
    assert ctx.mode == "regions" and ctx.loss_fn is None
    x, target = inputs(batch=2)
    with torch.no_grad():
        logits = predictors["regions"](x)
    for t in range(4):
        want = segpgd_loss(logits, target, "regions", t / 8)
        torch.testing.assert_close(attack.objective(ctx, logits, target, t), want)
        torch.testing.assert_close(ctx.objective(logits, target, t), want)
        assert segpgd_lambda(t, 4) == t / 8


def test_injected_callable_loss_is_used(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=1)

    def mean_logit(logits: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
        return logits.mean()

    res = attacks.create("bim", eps=8, steps=3, loss=mean_logit).run(predictors["regions"], x, target)
    assert res.record["params"]["loss"] == "mean_logit"
    with torch.no_grad():
        assert float(predictors["regions"](res.x_adv).mean()) > float(predictors["regions"](x).mean())


def test_default_step_sizes_and_record() -> None:
    assert attacks.create("bim", eps=8, steps=10).params()["alpha"] == pytest.approx(1.0)
    assert attacks.create("pgd", eps=8, steps=20).params()["alpha"] == pytest.approx(1.0)
    assert attacks.create("pgd", eps=8, steps=20, alpha=2).params()["alpha"] == 2.0
    assert attacks.create("fgsm", eps=4).params()["alpha"] == 4.0
    threat = ThreatModel(eps=2, norm="l2", mask="none")
    assert attacks.create("pgd", threat=threat).threat is threat


def test_eval_mode_restored_and_no_parameter_gradients(predictors: Any, inputs: Any) -> None:
    pred = predictors["regions"]
    x, target = inputs(batch=1)
    seen: list[bool] = []
    hook = pred.network.register_forward_pre_hook(lambda mod, args: seen.append(mod.training))
    try:
        for training in (True, False):
            pred.train(training)
            attacks.create("pgd", eps=8, steps=2).run(pred, x, target)
            assert pred.training is training
    finally:
        hook.remove()
        pred.eval()
    assert seen and not any(seen)
    assert all(p.grad is None for p in pred.parameters())


def test_noise_has_the_right_std_before_projection() -> None:
    noise = GaussianNoise(eps=6, seed=2).noise(torch.zeros(2, 4, 24, 24, 24))
    assert float(noise.mean()) == pytest.approx(0.0, abs=2e-4)
    assert float(noise.std()) == pytest.approx(6 / 255, rel=0.02)
    assert torch.equal(noise[0], noise[1])  # a sample's noise depends on the seed only, not on its batch position
    assert not torch.equal(noise, GaussianNoise(eps=6, seed=3).noise(torch.zeros(2, 4, 24, 24, 24)))


@pytest.mark.parametrize("name", ["bim", "pgd", "targeted_bim", "segpgd", "cospgd"])
@pytest.mark.parametrize("cfg, match", [
    ({"steps": -1}, "steps"), ({"steps": 2.5}, "steps"), ({"alpha": 0}, "alpha"), ({"alpha": -1.0}, "alpha"),
    ({"norm": "l3"}, "norm"), ({"eps": -1}, "eps"), ({"mask": "skull"}, "mask"),
    ({"threat": ThreatModel(), "eps": 4}, "either threat"), ({"threat": {"eps": 4}}, "ThreatModel"),
])
def test_bad_parameters_are_config_errors(name: str, cfg: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        attacks.create(name, **cfg)


def test_bad_restarts_and_loss_are_config_errors(predictors: Any, inputs: Any) -> None:
    with pytest.raises(ConfigError, match="restarts"):
        attacks.create("pgd", restarts=0)
    with pytest.raises(ConfigError, match="loss"):
        attacks.create("pgd", loss=3)
    x, target = inputs(batch=1)
    with pytest.raises(ConfigError, match="loss"):
        attacks.create("pgd", loss="nope", steps=1).run(predictors["regions"], x, target)
    with pytest.raises(ConfigError, match="labels"):
        attacks.create("pgd", loss="ce", steps=1).run(predictors["regions"], x, target)


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "targeted_bim", "segpgd", "cospgd", "gaussian_noise"])
def test_wrong_input_shapes_are_config_errors(name: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2)
    attack = attacks.create(name, eps=4)
    for bad_target in (target[:, :1], target[:1], target[..., :8]):
        with pytest.raises(ConfigError, match="target"):
            attack.run(predictors["regions"], x, bad_target)
    with pytest.raises(ConfigError, match="target"):
        attack.run(predictors["labels"], x, target)  # region masks given to a labels predictor
    with pytest.raises(ConfigError, match="input x"):
        attack.run(predictors["regions"], x[0], target[0])
