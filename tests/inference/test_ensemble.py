"""EnsemblePredictor: attacks ascend the weighted mean of the members' losses (autograd oracle), single-member
ensembles equal the member, unsupported attacks and bad configurations are one-line ConfigErrors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import volrob.attacks as attacks
from volrob.attacks.losses import member_mean, resolve_loss
from volrob.data.labels import canonical_to_regions
from volrob.errors import ConfigError
from volrob.inference.ensemble import EnsemblePredictor
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.models import create as create_model

ROI = (16, 16, 16)


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here runs with one intra-op thread (see the root conftest)."""


def _member(mode: str, seed: int, *, in_channels: int = 4, out_channels: int | None = None) -> Predictor:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        out = out_channels or (3 if mode == "regions" else 4)
        net = create_model("unet", in_channels=in_channels, out_channels=out, roi_size=ROI, preset="tiny")
    return Predictor(net, mean=[0.5] * in_channels, std=[0.25] * in_channels,
                     window=SlidingWindowConfig(roi_size=ROI), output_mode=mode).eval()


def _data(mode: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 4, *ROI, generator=gen) * 0.9 + 0.05
    x[:, :, :3] = 0.0
    labels = torch.randint(0, 4, (1, 1, *ROI), generator=gen)
    return x, (labels if mode == "labels" else canonical_to_regions(labels).float())


@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_loss_and_gradient_are_the_weighted_member_means(mode: str) -> None:
    members = [_member(mode, 1), _member(mode, 2)]
    ensemble = EnsemblePredictor(members, weights=[1.0, 3.0])
    assert ensemble.weights == (0.25, 0.75) and ensemble.output_mode == mode
    x, target = _data(mode)
    loss_fn = resolve_loss("auto", mode)
    xr = x.clone().requires_grad_(True)
    value = member_mean(loss_fn, ensemble)(ensemble(xr), target)
    (grad,) = torch.autograd.grad(value, xr)
    parts, grads = [], []
    for m in members:
        xm = x.clone().requires_grad_(True)
        part = loss_fn(m(xm), target)
        grads.append(torch.autograd.grad(part, xm)[0])
        parts.append(part.detach())
    torch.testing.assert_close(value.detach(), 0.25 * parts[0] + 0.75 * parts[1])
    want = 0.25 * grads[0] + 0.75 * grads[1]
    torch.testing.assert_close(grad, want, atol=1e-5 * float(want.abs().max()), rtol=1e-5)  # float32 summation order
    assert not torch.allclose(grads[0], grads[1])  # the members differ, so the weighting is exercised


def test_bim_step_follows_the_mean_member_gradient() -> None:
    members = [_member("regions", 1), _member("regions", 2)]
    x, target = _data("regions", seed=3)
    res = attacks.create("bim", eps=4.0, steps=1, alpha=2.0).run(EnsemblePredictor(members), x, target)
    loss_fn = resolve_loss("auto", "regions")
    grad = torch.zeros_like(x)
    for m in members:
        xm = x.clone().requires_grad_(True)
        grad += 0.5 * torch.autograd.grad(loss_fn(m(xm), target), xm)[0]
    region = (x != 0).any(dim=1, keepdim=True)
    want = torch.where(region, (x + 2.0 / 255 * grad.sign()).clamp(0, 1), x)
    clear = grad.abs() > 1e-6 * grad.abs().max()  # away from sign ties that summation order may flip
    torch.testing.assert_close(res.x_adv[clear], want[clear], atol=1e-7, rtol=0)


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "mifgsm", "di_mifgsm", "segpgd", "cospgd"])
@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_single_member_ensemble_equals_the_member(name: str, mode: str) -> None:
    member = _member(mode, 1)
    x, target = _data(mode, seed=4)
    cfg: dict[str, Any] = {"eps": 8.0, "seed": 3} | ({} if name == "fgsm" else {"steps": 2})
    alone = attacks.create(name, **cfg).run(member, x, target)
    ensemble = attacks.create(name, **cfg).run(EnsemblePredictor([member]), x, target)
    assert torch.equal(alone.x_adv, ensemble.x_adv)
    assert alone.record["final_loss"] == ensemble.record["final_loss"]


@pytest.mark.parametrize("name,cfg", [("asma", {"steps": 1}), ("vafa3d", {"steps": 1, "block": 8})])
def test_attacks_with_their_own_objective_reject_an_ensemble(name: str, cfg: dict[str, Any]) -> None:
    x, target = _data("regions")
    ensemble = EnsemblePredictor([_member("regions", 1), _member("regions", 2)])
    with pytest.raises(ConfigError) as info:
        attacks.create(name, **cfg).run(ensemble, x, target)
    assert "\n" not in str(info.value) and "ensemble" in str(info.value)


def test_named_loss_rejects_concatenated_logits() -> None:
    with pytest.raises(ConfigError, match="3 logit channels, got 6"):
        resolve_loss("auto", "regions")(torch.zeros(1, 6, 2, 2, 2), torch.zeros(1, 3, 2, 2, 2))


def test_mismatched_output_channels_fail_at_forward() -> None:
    ensemble = EnsemblePredictor([_member("labels", 1), _member("labels", 2, out_channels=5)])
    with pytest.raises(ConfigError, match="output channels"):
        ensemble(_data("labels")[0])


@pytest.mark.parametrize("members,weights,match", [
    ([], None, "non-empty"),
    ("predictor", None, "non-empty"),
    ([object()], None, r"members\[0\]"),
    (["regions", "labels"], None, "output_mode"),
    (["regions", "regions3"], None, "input channels"),
    (["regions", "regions"], [1.0], "one entry per member"),
    (["regions", "regions"], [1.0, -1.0], r"weights\[1\]"),
    (["regions", "regions"], [0.0, 0.0], "all be zero"),
    (["regions", "regions"], [float("nan"), 1.0], r"weights\[0\]"),
    (["regions", "regions"], "ab", "sequence of numbers"),
])
def test_bad_configurations_are_one_line_config_errors(members: Any, weights: Any, match: str) -> None:
    made = {"regions": lambda: _member("regions", 1), "labels": lambda: _member("labels", 1),
            "regions3": lambda: _member("regions", 1, in_channels=3)}
    if isinstance(members, list):
        members = [made[m]() if isinstance(m, str) else m for m in members]
    with pytest.raises(ConfigError, match=match) as info:
        EnsemblePredictor(members, weights=weights)
    assert "\n" not in str(info.value)


def test_nested_ensemble_is_rejected() -> None:
    inner = EnsemblePredictor([_member("regions", 1)])
    with pytest.raises(ConfigError, match="not an ensemble"):
        EnsemblePredictor([inner])
