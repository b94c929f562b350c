"""MI-FGSM and 3D input diversity: reductions to BIM / MI-FGSM, a reference momentum loop, transform alignment."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import volrob.attacks as attacks
from volrob.attacks.diversity import diverse_pair, draw_transform, resize_crop
from volrob.attacks.losses import resolve_loss
from volrob.attacks.voxel_losses import voxel_loss
from volrob.errors import ConfigError


@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_mifgsm_without_momentum_is_bim(mode: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, mode=mode, seed=3)
    cfg = {"eps": 8.0, "steps": 3, "alpha": 1.5}
    mi = attacks.create("mifgsm", decay=0.0, **cfg).run(predictors[mode], x, target).x_adv
    bim = attacks.create("bim", **cfg).run(predictors[mode], x, target).x_adv
    assert torch.equal(mi, bim)


def test_mifgsm_l2_without_momentum_is_bim(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=1, seed=4)
    cfg = {"eps": 300.0, "norm": "l2", "steps": 3, "alpha": 100.0}
    mi = attacks.create("mifgsm", decay=0.0, **cfg).run(predictors["regions"], x, target).x_adv
    bim = attacks.create("bim", **cfg).run(predictors["regions"], x, target).x_adv
    torch.testing.assert_close(mi, bim, atol=1e-6, rtol=0)


def _reference_mifgsm(predictor: nn.Module, x: torch.Tensor, target: torch.Tensor, *, eps: float, alpha: float,
                      steps: int, decay: float) -> torch.Tensor:
    """Momentum iterative FGSM written out by hand for one sample (L∞, brain mask)."""
    loss_fn = resolve_loss("auto", predictor.output_mode)
    region = (x != 0).any(dim=1, keepdim=True).to(x.dtype)
    lo, hi = (x - eps / 255).clamp(0, 1), (x + eps / 255).clamp(0, 1)
    x_adv, g = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(predictor(x_adv), target), x_adv)
        grad = grad * region
        g = decay * g + grad / grad.abs().sum()
        with torch.no_grad():
            moved = x_adv + alpha / 255 * g.sign() * region
            x_adv = torch.minimum(torch.maximum(moved, lo), hi)
            x_adv = torch.where(region.bool().expand_as(x), x_adv, x)
    return x_adv.detach()


@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_mifgsm_matches_reference_momentum_loop(mode: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, mode=mode, seed=5)
    attack = attacks.create("mifgsm", eps=8.0, steps=4, alpha=3.0, decay=0.5)
    got = attack.run(predictors[mode], x, target).x_adv
    for i in range(2):
        want = _reference_mifgsm(predictors[mode].eval(), x[i:i + 1], target[i:i + 1], eps=8.0, alpha=3.0, steps=4,
                                 decay=0.5)
        torch.testing.assert_close(got[i:i + 1], want, atol=1e-6, rtol=0)


def test_mifgsm_default_alpha_is_eps_over_steps() -> None:
    assert attacks.create("mifgsm", eps=8.0, steps=4).params()["alpha"] == pytest.approx(2.0)
    assert attacks.create("mifgsm", eps=[4.0, 8.0], steps=4).params()["alpha"] == pytest.approx([1.0, 2.0])


@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_di_without_diversity_is_mifgsm(mode: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, mode=mode, seed=6)
    cfg = {"eps": 8.0, "steps": 3, "decay": 0.9, "seed": 2}
    di = attacks.create("di_mifgsm", diversity_prob=0.0, **cfg).run(predictors[mode], x, target).x_adv
    mi = attacks.create("mifgsm", **cfg).run(predictors[mode], x, target).x_adv
    assert torch.equal(di, mi)


def test_di_with_unit_scale_is_mifgsm(predictors: Any, inputs: Any) -> None:
    """Always transformed, but with scale 1 the resize and crop are the identity."""
    x, target = inputs(batch=1, seed=7)
    di = attacks.create("di_mifgsm", eps=8.0, steps=3, diversity_prob=1.0, diversity_scale=1.0)
    mi = attacks.create("mifgsm", eps=8.0, steps=3)
    assert torch.equal(di.run(predictors["regions"], x, target).x_adv, mi.run(predictors["regions"], x, target).x_adv)


def test_di_transform_changes_the_attack(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=1, seed=8)
    di = attacks.create("di_mifgsm", eps=8.0, steps=3, diversity_prob=1.0, diversity_scale=1.3)
    mi = attacks.create("mifgsm", eps=8.0, steps=3)
    assert not torch.equal(di.run(predictors["regions"], x, target).x_adv,
                           mi.run(predictors["regions"], x, target).x_adv)


def test_draw_transform_ranges_and_determinism() -> None:
    spatial = (16, 12, 20)
    for seed in range(20):
        sizes, offsets = draw_transform(spatial, 1.1, torch.Generator().manual_seed(seed))
        assert (sizes, offsets) == draw_transform(spatial, 1.1, torch.Generator().manual_seed(seed))
        for n, s, o in zip(spatial, sizes, offsets, strict=True):
            assert n <= s <= round(n * 1.1) and 0 <= o <= s - n


def test_nearest_resize_crop_matches_index_oracle() -> None:
    t = torch.arange(2 * 6 * 5 * 7).reshape(1, 2, 6, 5, 7)
    sizes, offsets = (8, 5, 9), (1, 0, 2)
    got = resize_crop(t, sizes, offsets, "nearest")
    idx = [[(o + j) * n // s for j in range(n)] for n, s, o in zip(t.shape[2:], sizes, offsets, strict=True)]
    want = t[:, :, idx[0]][:, :, :, idx[1]][:, :, :, :, idx[2]]
    assert got.dtype == t.dtype and torch.equal(got, want)


class _Pointwise(nn.Module):
    """A 1x1x1 convolution: translation-equivariant and voxelwise; channel 0 of the output is input channel 0."""

    def __init__(self, out_channels: int, output_mode: str) -> None:
        super().__init__()
        self.output_mode = output_mode
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.randn(out_channels, 4, generator=gen)
        self.weight[0] = torch.tensor([8.0, 0.0, 0.0, 0.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kc,bc...->bk...", self.weight, x - 0.5)


@pytest.mark.parametrize("mode,channels", [("regions", 3), ("labels", 4)])
def test_diversity_keeps_input_and_target_aligned(mode: str, channels: int, inputs: Any) -> None:
    """For a voxelwise net the per-voxel loss of the transformed pair is the transformed per-voxel loss."""
    x, target = inputs(batch=1, mode=mode, seed=9)
    net = _Pointwise(channels, mode)
    clean = voxel_loss(net(x), target, mode)
    for seed in range(5):
        sizes, offsets = draw_transform(x.shape[2:], 1.1, torch.Generator().manual_seed(seed))
        x_t, target_t = diverse_pair(x, target, sizes, offsets, mode="nearest")
        assert target_t.dtype == target.dtype and target_t.shape == target.shape
        moved = voxel_loss(net(x_t), target_t, mode)
        assert torch.equal(moved, resize_crop(clean, sizes, offsets, "nearest"))


def test_diversity_trilinear_keeps_a_constant_volume() -> None:
    x = torch.full((1, 2, 8, 8, 8), 0.25)
    x_t, _ = diverse_pair(x, torch.zeros(1, 1, 8, 8, 8, dtype=torch.long), (9, 8, 9), (1, 0, 0))
    torch.testing.assert_close(x_t, x)


@pytest.mark.parametrize("name,option,value", [
    ("mifgsm", "decay", -0.5), ("mifgsm", "decay", float("nan")), ("mifgsm", "decay", "1"), ("mifgsm", "decay", True),
    ("di_mifgsm", "diversity_prob", 1.5), ("di_mifgsm", "diversity_prob", -0.1),
    ("di_mifgsm", "diversity_prob", None), ("di_mifgsm", "diversity_scale", 0.9),
    ("di_mifgsm", "diversity_scale", float("inf")), ("di_mifgsm", "diversity_scale", "big"),
    ("mifgsm", "steps", -1), ("di_mifgsm", "alpha", 0.0),
])
def test_bad_options_are_one_line_config_errors(name: str, option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option) as info:
        attacks.create(name, **{option: value})
    assert "\n" not in str(info.value)
