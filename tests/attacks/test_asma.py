"""ASMA: masked loss and IoU against hand computations, adaptive step, L2 term, effect on a tiny real UNet."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import volrob.attacks as attacks
from volrob.attacks.asma import ASMA, asma_masked_loss, target_iou
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError


def _iou_oracle(pred: np.ndarray, want: np.ndarray) -> float:
    """Mean IoU over the channels (boolean ``(K, ...)``) non-empty in either; 1 when all are empty."""
    vals = []
    for p, w in zip(pred, want, strict=True):
        union = np.logical_or(p, w).sum()
        if union:
            vals.append(np.logical_and(p, w).sum() / union)
    return float(np.mean(vals)) if vals else 1.0


def _labels_masks(classes: np.ndarray, k: int) -> np.ndarray:
    return np.stack([classes == c for c in range(1, k)])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), mode=st.sampled_from(["regions", "labels"]))
def test_target_iou_matches_numpy_oracle(seed: int, mode: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3 if mode == "regions" else 4, 3, 4, 2, generator=gen)
    if mode == "regions":
        target = (torch.rand(2, 3, 3, 4, 2, generator=gen) > 0.6).float()
    else:
        target = torch.randint(0, 4, (2, 1, 3, 4, 2), generator=gen)
    got = target_iou(logits, target, mode).tolist()
    for b in range(2):
        if mode == "regions":
            want = _iou_oracle(logits[b].numpy() > 0, target[b].numpy() > 0.5)
        else:
            want = _iou_oracle(_labels_masks(logits[b].argmax(0).numpy(), 4), _labels_masks(target[b, 0].numpy(), 4))
        assert got[b] == pytest.approx(want, abs=1e-12)


def test_target_iou_both_empty_is_one_and_disjoint_is_zero() -> None:
    empty = torch.zeros(1, 3, 2, 2, 2)
    assert target_iou(-torch.ones(1, 3, 2, 2, 2), empty, "regions").tolist() == [1.0]
    assert target_iou(-torch.ones(1, 3, 2, 2, 2), torch.ones(1, 3, 2, 2, 2), "regions").tolist() == [0.0]
    logits = torch.zeros(1, 4, 2, 2, 2)
    logits[:, 0] = 1.0  # everything predicted background
    assert target_iou(logits, torch.zeros(1, 1, 2, 2, 2, dtype=torch.long), "labels").tolist() == [1.0]
    with pytest.raises(ConfigError, match="output mode"):
        target_iou(logits, torch.zeros(1, 1, 2, 2, 2), "bogus")


def test_masked_loss_labels_by_hand() -> None:
    # Two voxels, three classes. Voxel 0 already predicts its target (class 1); voxel 1 (target 2) does not.
    logits = torch.tensor([[2.0, 0.5], [3.0, 1.0], [0.0, -1.0]]).view(1, 3, 2, 1, 1).requires_grad_(True)
    target = torch.tensor([1, 2]).view(1, 1, 2, 1, 1)
    loss = asma_masked_loss(logits, target, "labels", "logit")
    assert float(loss.detach()) == pytest.approx(1.0 / 2)  # minus the wrong voxel's target logit (-1), mean over 2
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    want = torch.zeros(3, 2)
    want[2, 1] = -0.5
    torch.testing.assert_close(grad.view(3, 2), want)
    ce = asma_masked_loss(logits, target, "labels", "ce")
    z = torch.tensor([0.5, 1.0, -1.0])
    assert float(ce.detach()) == pytest.approx(float(torch.logsumexp(z, 0) - z[2]) / 2, rel=1e-6)
    (grad_ce,) = torch.autograd.grad(ce.sum(), logits)
    assert torch.all(grad_ce.view(3, 2)[:, 0] == 0) and torch.all(grad_ce.view(3, 2)[:, 1] != 0)


def test_masked_loss_regions_by_hand() -> None:
    # One voxel, three region channels: logits (+1, -2, +3), wanted (1, 1, 0) -> only channels 1 and 2 are wrong.
    logits = torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1, 1).requires_grad_(True)
    target = torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1, 1)
    loss = asma_masked_loss(logits, target, "regions", "logit")
    assert float(loss.detach()) == pytest.approx((2.0 + 3.0) / 3)  # -(signed logit) = -(-2) and -(-3), mean over 3
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    torch.testing.assert_close(grad.view(3), torch.tensor([0.0, -1 / 3, 1 / 3]))
    ce = asma_masked_loss(logits, target, "regions", "ce")
    sp = torch.nn.functional.softplus
    assert float(ce.detach()) == pytest.approx(float(sp(torch.tensor(2.0)) + sp(torch.tensor(3.0))) / 3, rel=1e-6)


def test_no_gradient_once_prediction_equals_target(predictors: Any, inputs: Any) -> None:
    """Target = the clean prediction: nothing is wrong, so without the L2 term the attack does not move."""
    for mode in ("regions", "labels"):
        pred = predictors[mode]
        x, _ = inputs(batch=1, mode=mode, seed=2)
        with torch.no_grad():
            clean = pred(x)
        target = (clean > 0).float() if mode == "regions" else clean.argmax(1, keepdim=True)
        res = attacks.create("asma", eps=8, steps=3, l2_weight=0.0).run(pred, x, target)
        assert torch.equal(res.x_adv, x) and res.record["iou"] == [1.0] and res.record["final_loss"] == [0.0]


@pytest.mark.parametrize("mode", ["regions", "labels"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_moves_prediction_towards_target(mode: str, norm: str, predictors: Any, inputs: Any) -> None:
    pred = predictors[mode]
    x, _ = inputs(batch=2, mode=mode, seed=3)
    x_other, _ = inputs(batch=2, mode=mode, seed=4)
    with torch.no_grad():
        out = pred(x_other)
    target = (out > 0).float() if mode == "regions" else out.argmax(1, keepdim=True)
    eps = 16.0 if norm == "linf" else 16.0 * 40
    res = attacks.create("asma", eps=eps, norm=norm, steps=8).run(pred, x, target)
    with torch.no_grad():
        clean_logits, adv_logits = pred(x), pred(res.x_adv)
    clean, adv = target_iou(clean_logits, target, mode), target_iou(adv_logits, target, mode)
    assert bool((adv > clean).all()), (clean.tolist(), adv.tolist())
    assert res.record["iou"] == pytest.approx(adv.tolist(), abs=1e-9)
    assert res.record["iou_clean"] == pytest.approx(clean.tolist(), abs=1e-9)
    assert res.record["targeted"] is True and len(res.record["loss"]) == 8


def test_multiplier_grows_with_iou() -> None:
    attack = ASMA(growth=2.0)
    values = [attack.multiplier(i) for i in np.linspace(0, 1, 11)]
    assert values[0] == 1.0 and values[-1] == 3.0 and all(b > a for a, b in itertools.pairwise(values))
    assert ASMA(growth=0.0).multiplier(0.7) == 1.0


def test_first_step_uses_iou_multiplier(predictors: Any, inputs: Any) -> None:
    """One L∞ step of base alpha moves every changed voxel by exactly alpha * (1 + growth * IoU_clean)."""
    pred = predictors["regions"]
    x, target = inputs(batch=1, seed=6)
    for growth in (0.0, 3.0):
        res = attacks.create("asma", eps=16, steps=1, alpha=2.0, growth=growth, l2_weight=0.0,
                             mask="none").run(pred, x, target)
        iou = res.record["iou_clean"][0]
        assert 0 < iou < 1
        step = 2.0 * (1 + growth * iou)
        assert res.record["multiplier"] == pytest.approx([1 + growth * iou])
        moved = (res.x_adv - x).abs()[(res.x_adv > 0) & (res.x_adv < 1)] * 255  # voxels not clipped to [0, 1]
        torch.testing.assert_close(moved.max().double(), torch.tensor(step, dtype=torch.float64), atol=1e-4,
                                   rtol=0)


def test_l2_term_is_in_the_objective(predictors: Any, inputs: Any) -> None:
    pred = predictors["labels"]
    x, target = inputs(batch=1, mode="labels", seed=8)
    x_adv = (x + 4 / 255 * (x > 0)).clamp(0, 1)
    attack = ASMA(l2_weight=0.5)
    with torch.no_grad():
        logits = pred(x_adv)
        got = attack.objective(logits, target, x, x_adv, "labels")
    dist = float(((x_adv - x) * 255).pow(2).mean())
    want = float(asma_masked_loss(logits, target, "labels")) + 0.5 * dist
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_l2_weight_changes_and_shrinks_the_perturbation(predictors: Any, inputs: Any) -> None:
    pred = predictors["regions"]
    x, target = inputs(batch=1, seed=9)
    free = attacks.create("asma", eps=8, norm="l2", steps=6, l2_weight=0.0).run(pred, x, target)
    tied = attacks.create("asma", eps=8, norm="l2", steps=6, l2_weight=5.0).run(pred, x, target)
    assert not torch.equal(free.x_adv, tied.x_adv)
    assert tied.record["l2_255"][0] < free.record["l2_255"][0]


def test_zero_steps_returns_x_and_record(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2)
    res = attacks.create("asma", steps=0).run(predictors["regions"], x, target)
    assert torch.equal(res.x_adv, x) and res.record["loss"] == [] and res.record["iou"] == res.record["iou_clean"]
    assert res.record["params"]["step_rule"] == "alpha * (1 + growth * IoU)"


@pytest.mark.parametrize("cfg, match", [
    ({"steps": -1}, "steps"), ({"steps": 2.5}, "steps"), ({"alpha": 0}, "alpha"), ({"alpha": "x"}, "alpha"),
    ({"growth": -0.1}, "growth"), ({"growth": True}, "growth"), ({"l2_weight": -1.0}, "l2_weight"),
    ({"l2_weight": "big"}, "l2_weight"), ({"loss": "dice"}, "loss"), ({"eps": -1.0}, "eps"),
    ({"norm": "l1"}, "norm"), ({"threat": ThreatModel(), "eps": 4.0}, "either threat"),
])
def test_bad_parameters_raise_config_error(cfg: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        attacks.create("asma", **cfg)


def test_bad_inputs_raise_config_error(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=1)
    with pytest.raises(ConfigError, match="target"):
        attacks.create("asma", steps=1).run(predictors["regions"], x, target[:, :1])
    with pytest.raises(ConfigError, match="input x"):
        attacks.create("asma", steps=1).run(predictors["regions"], x[0], target)
    with pytest.raises(ConfigError, match="loss"):
        asma_masked_loss(torch.zeros(1, 3, 1, 1, 1), torch.zeros(1, 3, 1, 1, 1), "regions", "dice")
