"""The exact windowed gradient against autograd through MONAI, the tiles protocol, and the memory bound."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.inferers import sliding_window_inference
from torch import nn

from volrob.attacks.losses import resolve_loss
from volrob.errors import ConfigError
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.inference.tiles import tile_plan
from volrob.inference.windowed_grad import sliding_plan, windowed_inference
from volrob.models import create

ROI = (8, 8, 8)
CPU = torch.device("cpu")


class ConvNet(nn.Module):
    """A small two-layer 3x3x3 conv net: each output voxel sees its neighbours, so window edges matter."""

    def __init__(self, out_channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv3d(4, 6, 3, padding=1), nn.Tanh(), nn.Conv3d(6, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def convnet(dtype: torch.dtype = torch.float64) -> nn.Module:
    return ConvNet().to(dtype).eval()


def unet(roi: tuple[int, int, int], out_channels: int = 3) -> nn.Module:
    torch.manual_seed(1)
    return create("unet", in_channels=4, out_channels=out_channels, roi_size=roi, preset="tiny").eval()


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


CASES = [  # (spatial shape, blend mode, overlap, sw_batch_size, batch size)
    ((10, 12, 9), "gaussian", 0.5, 2, 2),  # overlapping gaussian windows, non-divisible sizes, batch > 1
    ((6, 15, 8), "constant", 0.25, 3, 1),  # smaller than the ROI along one axis (padded), sw_batch_size > 1
    ((5, 6, 11), "gaussian", 0.5, 1, 1),  # smaller along two axes
    ((8, 8, 17), "constant", 0.5, 4, 2),  # equal to the ROI in two axes
]


@pytest.mark.parametrize(("shape", "mode", "overlap", "sw", "batch"), CASES)
def test_exact_gradient_equals_autograd_through_monai(shape: tuple[int, int, int], mode: str, overlap: float,
                                                      sw: int, batch: int) -> None:
    net, x = convnet(), rand(batch, 4, *shape)
    plan = sliding_plan(shape, ROI, overlap, mode, device=CPU, stitch_device=CPU, dtype=x.dtype)
    xe, xa = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_e = windowed_inference(net, xe, plan, sw)
    out_a = sliding_window_inference(xa, ROI, sw, net, overlap=overlap, mode=mode)
    assert torch.equal(out_e.detach(), out_a.detach())  # same windows, weights and accumulation order
    weight = rand(*out_a.shape, seed=5) - 0.5
    (out_e * weight).sum().backward()
    (out_a * weight).sum().backward()
    assert xe.grad is not None and xa.grad is not None
    assert rel_err(xe.grad, xa.grad) <= 1e-5


@pytest.mark.parametrize("output_mode", ["regions", "labels"])
def test_predictor_loss_gradient_matches_autograd(output_mode: str) -> None:
    """Dice+BCE (regions) / Dice+CE (labels) on the stitched output of the real UNet: exact = naive gradient."""
    roi, shape = (16, 16, 16), (2, 18, 12, 20)  # batch 2; one axis smaller than the ROI
    if output_mode == "labels":  # the small conv net keeps this case quick; the UNet runs for regions
        roi, shape = ROI, (2, 10, 6, 11)
    net = unet(roi) if output_mode == "regions" else ConvNet(4).eval()
    x = rand(*shape[:1], 4, *shape[1:], dtype=torch.float32)
    if output_mode == "regions":
        target = (rand(shape[0], 3, *shape[1:], seed=2, dtype=torch.float32) > 0.7).float()
    else:
        target = torch.randint(0, 4, (shape[0], 1, *shape[1:]), generator=torch.Generator().manual_seed(2))
    loss = resolve_loss("auto", output_mode)
    grads = {}
    for gradient in ("exact", "autograd"):
        pred = Predictor(net, mean=[0.2] * 4, std=[0.3] * 4, output_mode=output_mode,
                         window=SlidingWindowConfig(roi_size=roi, overlap=0.5, sw_batch_size=3, gradient=gradient))
        xg = x.clone().requires_grad_(True)
        (grads[gradient],) = torch.autograd.grad(loss(pred(xg), target), xg)
    assert grads["autograd"].abs().sum() > 0
    assert rel_err(grads["exact"], grads["autograd"]) <= 1e-5


def test_no_grad_forward_unchanged_for_every_sliding_option() -> None:
    net, x = convnet(torch.float32), rand(1, 4, 13, 9, 15, dtype=torch.float32)
    ref = sliding_window_inference(x, ROI, 2, net, overlap=0.5, mode="gaussian")
    for gradient in ("exact", "autograd"):
        pred = Predictor(net, mean=[0.0] * 4, std=[1.0] * 4,
                         window=SlidingWindowConfig(roi_size=ROI, gradient=gradient, amp="auto"))  # CPU: float32
        with torch.no_grad():
            assert torch.equal(pred(x), ref)
        assert torch.equal(pred(x.clone().requires_grad_(True)).detach(), ref)


def tiles_oracle(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Independent reference: zero-pad to a multiple of the ROI, run every tile on its own, place, crop."""
    size = x.shape[2:]
    full = [math.ceil(s / r) * r for s, r in zip(size, ROI, strict=True)]
    xp = F.pad(x, [0, full[2] - size[2], 0, full[1] - size[1], 0, full[0] - size[0]])
    ranges = [range(0, f, r) for f, r in zip(full, ROI, strict=True)]
    out = torch.cat([torch.cat([torch.cat([net(xp[:, :, i : i + 8, j : j + 8, k : k + 8]) for k in ranges[2]], 4)
                                for j in ranges[1]], 3) for i in ranges[0]], 2)
    return out[:, :, : size[0], : size[1], : size[2]]


def test_tiles_forward_and_gradient_equal_per_tile_network() -> None:
    net, x = convnet(), rand(2, 4, 10, 8, 19, seed=3)
    pred = Predictor(net, mean=[0.0] * 4, std=[1.0] * 4,
                     window=SlidingWindowConfig(roi_size=ROI, gradient="tiles", sw_batch_size=4))
    xt, xo = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_t, out_o = pred(xt), tiles_oracle(net, xo)
    torch.testing.assert_close(out_t, out_o, rtol=1e-12, atol=1e-12)
    weight = rand(*out_o.shape, seed=6) - 0.5
    (out_t * weight).sum().backward()
    (out_o * weight).sum().backward()
    assert xt.grad is not None and xo.grad is not None
    assert rel_err(xt.grad, xo.grad) <= 1e-10
    blended = sliding_window_inference(x, ROI, 4, net, overlap=0.5, mode="gaussian")
    assert not torch.allclose(out_o.detach(), blended)
    with torch.no_grad():  # evaluation (no graph) uses blended overlapping windows, as the published protocol does
        torch.testing.assert_close(pred(x), blended, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pred(x), blended, rtol=1e-12, atol=1e-12)  # no input gradient requested: same


@settings(max_examples=30, deadline=None)
@given(size=st.tuples(*[st.integers(1, 40)] * 3), roi=st.tuples(*[st.integers(1, 12)] * 3))
def test_tile_plan_covers_every_voxel_once(size: tuple[int, int, int], roi: tuple[int, int, int]) -> None:
    plan = tile_plan(size, roi, device=CPU, stitch_device=CPU, dtype=torch.float32)
    cover = torch.zeros(plan.padded_size)
    for s in plan.slices:
        cover[s] += 1
    assert torch.equal(cover, torch.ones(plan.padded_size))
    assert len(plan.slices) == math.prod(math.ceil(a / r) for a, r in zip(size, roi, strict=True))
    assert tuple(cover[plan.crop].shape) == size


class _Token:
    def __init__(self, counter: GraphCounter) -> None:
        self.counter = counter
        counter.alive += 1
        counter.peak = max(counter.peak, counter.alive)

    def __del__(self) -> None:
        self.counter.alive -= 1


class _Mark(torch.autograd.Function):
    """Identity whose graph node holds a token: the token lives exactly as long as that graph does."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, counter: GraphCounter) -> torch.Tensor:
        ctx.token = _Token(counter)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class GraphCounter(nn.Module):
    """Wraps a network and counts how many window-batch graphs are alive at once (and the network calls)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.alive, self.peak, self.calls = net, 0, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        y = self.net(x)
        return _Mark.apply(y, self) if torch.is_grad_enabled() else y


@pytest.mark.parametrize("shape", [(12, 12, 12), (20, 18, 22)])
def test_exact_backward_holds_one_window_batch_graph(shape: tuple[int, int, int]) -> None:
    """The exact path never holds more than one window batch's graph, however many windows the volume has;
    naive autograd through MONAI holds all of them until backward."""
    x = rand(1, 4, *shape, dtype=torch.float32)
    plan = sliding_plan(shape, ROI, 0.5, "gaussian", device=CPU, stitch_device=CPU, dtype=x.dtype)
    batches = math.ceil(len(plan.slices) / 2)
    exact = GraphCounter(convnet(torch.float32))
    windowed_inference(exact, x.clone().requires_grad_(True), plan, 2).sum().backward()
    assert exact.calls == batches + len(plan.slices)  # one graph-free forward per batch, one recompute per window
    assert exact.peak == 1 and exact.alive == 0
    naive = GraphCounter(exact.net)
    sliding_window_inference(x.clone().requires_grad_(True), ROI, 2, naive, overlap=0.5, mode="gaussian").sum()
    assert naive.peak == batches > 1


def test_training_mode_falls_back_to_autograd_with_parameter_gradients() -> None:
    net = convnet(torch.float32).train()
    pred = Predictor(net, mean=[0.0] * 4, std=[1.0] * 4, window=SlidingWindowConfig(roi_size=ROI))
    x = rand(1, 4, 10, 10, 10, dtype=torch.float32).requires_grad_(True)
    pred(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_stitch_device_and_parameters_untouched_by_exact_path() -> None:
    net = convnet(torch.float32)
    pred = Predictor(net, mean=[0.0] * 4, std=[1.0] * 4,
                     window=SlidingWindowConfig(roi_size=ROI, stitch_device="cpu", sw_batch_size=3))
    x = rand(1, 4, 9, 13, 10, dtype=torch.float32).requires_grad_(True)
    (g,) = torch.autograd.grad(pred(x).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("grad_batch_size", [1, 5])
def test_grad_batch_size_changes_memory_not_gradient(grad_batch_size: int) -> None:
    shape = (10, 9, 12)
    x = rand(2, 4, *shape)
    plan = sliding_plan(shape, ROI, 0.5, "gaussian", device=CPU, stitch_device=CPU, dtype=x.dtype)
    net = GraphCounter(convnet())
    xe, xa = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    weight = rand(2, 3, *shape, seed=7) - 0.5
    (windowed_inference(net, xe, plan, 3, grad_batch_size=grad_batch_size) * weight).sum().backward()
    (sliding_window_inference(xa, ROI, 3, net.net, overlap=0.5, mode="gaussian") * weight).sum().backward()
    assert xe.grad is not None and xa.grad is not None
    assert rel_err(xe.grad, xa.grad) <= 1e-10
    n_windows = 2 * len(plan.slices)
    assert net.calls == math.ceil(n_windows / 3) + math.ceil(n_windows / grad_batch_size)
    assert net.peak == 1 and net.alive == 0


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_grad_batch_size_is_config_error(bad: int) -> None:
    x = rand(1, 4, 9, 9, 9).requires_grad_(True)
    plan = sliding_plan((9, 9, 9), ROI, 0.5, "gaussian", device=CPU, stitch_device=CPU, dtype=x.dtype)
    with pytest.raises(ConfigError, match="grad_batch_size"):
        windowed_inference(convnet(), x, plan, 2, grad_batch_size=bad)


def test_unpadded_volume_normalised_per_window_is_exact() -> None:
    """Larger than the ROI on every axis (no padding): the predictor normalises window by window; the forward is
    bit-identical to MONAI on the normalised volume and the gradient equals autograd's."""
    net, x = convnet(torch.float32), rand(1, 4, 13, 10, 17, dtype=torch.float32)
    mean, std = [0.1, 0.2, 0.3, 0.4], [0.5, 0.3, 0.25, 2.0]
    m, s = torch.tensor(mean).view(1, 4, 1, 1, 1), torch.tensor(std).view(1, 4, 1, 1, 1)
    ref = sliding_window_inference((x - m) / s, ROI, 2, net, overlap=0.5, mode="gaussian")
    weight = rand(*ref.shape, seed=8, dtype=torch.float32) - 0.5
    grads = {}
    for gradient in ("exact", "autograd"):
        pred = Predictor(net, mean=mean, std=std, window=SlidingWindowConfig(roi_size=ROI, gradient=gradient))
        xg = x.clone().requires_grad_(True)
        out = pred(xg)
        assert torch.equal(out.detach(), ref)
        (grads[gradient],) = torch.autograd.grad((out * weight).sum(), xg)
    assert rel_err(grads["exact"], grads["autograd"]) <= 1e-5
    with pytest.raises(ConfigError, match="predictor expects input"):
        Predictor(net, mean=mean, std=std, window=SlidingWindowConfig(roi_size=ROI))(x[:, :3].requires_grad_(True))
