"""Per-voxel losses for SegPGD / CosPGD against hand computations (numpy oracles), both output modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from volrob.attacks.loop import per_sample
from volrob.attacks.losses import resolve_loss
from volrob.attacks.voxel_losses import (
    cosine_weights,
    cospgd_loss,
    segpgd_lambda,
    segpgd_loss,
    voxel_correct,
    voxel_loss,
)
from volrob.errors import ConfigError


def _case(mode: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    if mode == "regions":
        return torch.randn(2, 3, 4, 5, 6, generator=gen) * 3, (torch.rand(2, 3, 4, 5, 6, generator=gen) > 0.5).float()
    return torch.randn(2, 4, 4, 5, 6, generator=gen) * 3, torch.randint(0, 4, (2, 1, 4, 5, 6), generator=gen)


def _np_voxel_loss(logits: np.ndarray, target: np.ndarray, mode: str) -> np.ndarray:
    if mode == "regions":
        p = 1 / (1 + np.exp(-logits))
        return -(target * np.log(p) + (1 - target) * np.log(1 - p))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -np.take_along_axis(logp, target.astype(np.int64), axis=1)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), mode=st.sampled_from(["regions", "labels"]))
def test_voxel_loss_matches_numpy(seed: int, mode: str) -> None:
    logits, target = _case(mode, seed)
    got = voxel_loss(logits.double(), target, mode).numpy()
    np.testing.assert_allclose(got, _np_voxel_loss(logits.double().numpy(), target.numpy(), mode), rtol=1e-9)


@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_voxel_correct(mode: str) -> None:
    logits, target = _case(mode, 1)
    got = voxel_correct(logits, target, mode).numpy()
    if mode == "regions":
        want = (logits.numpy() > 0) == (target.numpy() > 0.5)
    else:
        want = logits.numpy().argmax(1)[:, None] == target.numpy()
    assert got.shape == want.shape and (got == want).all()


def test_segpgd_lambda_schedule() -> None:
    assert [segpgd_lambda(t, 4) for t in range(5)] == [0.0, 0.125, 0.25, 0.375, 0.5]
    with pytest.raises(ConfigError, match="steps"):
        segpgd_lambda(0, 0)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), mode=st.sampled_from(["regions", "labels"]), lam=st.floats(0, 1))
def test_segpgd_loss_by_hand(seed: int, mode: str, lam: float) -> None:
    logits, target = _case(mode, seed)
    loss = _np_voxel_loss(logits.double().numpy(), target.numpy(), mode)
    correct = voxel_correct(logits.double(), target, mode).numpy()
    want = [((1 - lam) * loss[b][correct[b]].sum() + lam * loss[b][~correct[b]].sum()) / loss[b].size
            for b in range(2)]
    np.testing.assert_allclose(segpgd_loss(logits.double(), target, mode, lam).numpy(), want, rtol=1e-9)


def test_segpgd_gradient_ignores_wrong_voxels_at_step_zero() -> None:
    logits, target = _case("regions", 2)
    logits = logits.double().requires_grad_(True)
    (grad,) = torch.autograd.grad(segpgd_loss(logits, target, "regions", 0.0).sum(), logits)
    wrong = ~voxel_correct(logits, target, "regions")
    assert bool(wrong.any()) and float(grad[wrong].abs().max()) == 0.0


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_cosine_weights_labels_by_hand(seed: int) -> None:
    logits, target = _case("labels", seed)
    z = logits.double().numpy()
    prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    onehot = np.eye(4)[target.numpy()[:, 0]].transpose(0, 4, 1, 2, 3)
    want = (prob * onehot).sum(1) / np.linalg.norm(prob, axis=1)  # |onehot| = 1
    np.testing.assert_allclose(cosine_weights(logits.double(), target, "labels").numpy()[:, 0], want, rtol=1e-9)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_cosine_weights_regions_by_hand(seed: int) -> None:
    logits, target = _case("regions", seed)
    p = 1 / (1 + np.exp(-logits.double().numpy()))
    y = target.numpy()
    pred2 = np.stack([1 - p, p])
    true2 = np.stack([1 - y, y])
    want = (pred2 * true2).sum(0) / np.linalg.norm(pred2, axis=0) / np.linalg.norm(true2, axis=0)
    np.testing.assert_allclose(cosine_weights(logits.double(), target, "regions").numpy(), want, rtol=1e-9)


@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_cospgd_loss_is_weighted_mean_and_weights_are_detached(mode: str) -> None:
    logits, target = _case(mode, 3)
    logits = logits.double().requires_grad_(True)
    w = cosine_weights(logits, target, mode)
    assert not w.requires_grad
    want = (w * voxel_loss(logits, target, mode)).flatten(1).mean(1)
    got = cospgd_loss(logits, target, mode)
    torch.testing.assert_close(got, want)
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    (g_want,) = torch.autograd.grad((w * voxel_loss(logits, target, mode)).flatten(1).mean(1).sum(), logits)
    torch.testing.assert_close(g_got, g_want)


@pytest.mark.parametrize("fn", [voxel_loss, voxel_correct, cosine_weights, cospgd_loss])
def test_unknown_mode_is_config_error(fn: object) -> None:
    logits, target = _case("regions", 0)
    with pytest.raises(ConfigError, match="output mode"):
        fn(logits, target, "softmax")  # type: ignore[operator]


@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_per_sample_equals_loss_on_each_sample(mode: str) -> None:
    logits, target = _case(mode, 4)
    loss_fn = resolve_loss("auto", mode)
    got = per_sample(loss_fn, logits, target)
    assert got.shape == (2,)
    for b in range(2):
        torch.testing.assert_close(got[b], loss_fn(logits[b:b + 1], target[b:b + 1]).reshape(()))
