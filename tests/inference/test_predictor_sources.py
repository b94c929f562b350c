"""What model sources plug into the predictor: a per-case normalisation (the exact gradient through it equals
autograd) and their own window layout (used with and without a gradient), and ``with_window``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from volrob.inference.normalise import ZScoreNorm
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.inference.windowed_grad import WindowPlan, count_map, sliding_plan


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv3d(4, 6, 3, padding=1), nn.Tanh(), nn.Conv3d(6, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _input(seed: int = 0) -> torch.Tensor:
    x = torch.rand(1, 4, 20, 18, 14, generator=torch.Generator().manual_seed(seed))
    x[:, :, :3] = 0
    return x


def _plans(calls: list[tuple[int, ...]]):  # type: ignore[no-untyped-def]
    """A planner with steps of 4 voxels and a linear ramp of weights, recording the images it planned."""

    def planner(image_size: Sequence[int], roi_size: Sequence[int], overlap: float, mode: str, *,
                device: torch.device, stitch_device: torch.device, dtype: torch.dtype) -> WindowPlan:
        calls.append(tuple(image_size))
        starts = [sorted({*range(0, s - r + 1, 4), s - r}) for s, r in zip(image_size, roi_size, strict=True)]
        slices = tuple((slice(a, a + roi_size[0]), slice(b, b + roi_size[1]), slice(c, c + roi_size[2]))
                       for a in starts[0] for b in starts[1] for c in starts[2])
        imp = torch.linspace(0.5, 1.5, roi_size[0], dtype=dtype, device=device).view(1, 1, -1, 1, 1).expand(
            1, 1, *roi_size).contiguous()
        return WindowPlan(tuple(image_size), tuple(roi_size), (0, 0) * 3, tuple(image_size), slices, imp,
                          count_map(slices, imp, image_size, stitch_device))

    return planner


def _reference(net: nn.Module, x: torch.Tensor, plan: WindowPlan, norm: nn.Module) -> torch.Tensor:
    """The plan's stitched output written out by hand (plain autograd)."""
    xn = norm(x)
    out = torch.zeros(1, 3, *x.shape[2:], dtype=x.dtype)
    for s in plan.slices:
        out[(slice(None), slice(None), *s)] = out[(slice(None), slice(None), *s)] + net(
            xn[(slice(None), slice(None), *s)]) * plan.importance
    return out / plan.count


def test_zscore_norm_exact_gradient_equals_autograd() -> None:
    net, x = SmallNet().eval(), _input()
    win = SlidingWindowConfig(roi_size=(12, 12, 12), overlap=0.5)
    exact = Predictor(net, window=win, norm=ZScoreNorm(4, mask="channel")).eval()
    auto = exact.with_window(SlidingWindowConfig(roi_size=(12, 12, 12), overlap=0.5, gradient="autograd"))
    grads = []
    for pred in (exact, auto):
        xi = x.clone().requires_grad_(True)
        (pred(xi) * torch.linspace(-1, 1, 3).view(1, 3, 1, 1, 1)).sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)
    assert grads[0][:, :, :3].abs().sum() == 0 and grads[0][:, :, 3:].abs().min() > 0  # zero outside the mask
    plan = sliding_plan(x.shape[2:], (12, 12, 12), 0.5, "gaussian", device=x.device, stitch_device=x.device,
                        dtype=x.dtype)
    with torch.no_grad():
        torch.testing.assert_close(exact(x), _reference(net, x, plan, exact.norm), atol=1e-5, rtol=1e-5)


def test_planner_used_with_and_without_gradient() -> None:
    calls: list[tuple[int, ...]] = []
    net, x = SmallNet().eval(), _input(1)
    pred = Predictor(net, window=SlidingWindowConfig(roi_size=(12, 12, 12)), norm=ZScoreNorm(4),
                     planner=_plans(calls)).eval()
    plan = _plans([])(x.shape[2:], (12, 12, 12), 0.5, "gaussian", device=x.device, stitch_device=x.device,
                      dtype=x.dtype)
    with torch.no_grad():
        torch.testing.assert_close(pred(x), _reference(net, x, plan, pred.norm), atol=1e-5, rtol=1e-5)
    xi = x.clone().requires_grad_(True)
    pred(xi).square().sum().backward()
    xr = x.clone().requires_grad_(True)
    _reference(net, xr, plan, pred.norm).square().sum().backward()
    torch.testing.assert_close(xi.grad, xr.grad, atol=1e-5, rtol=1e-4)
    assert calls == [tuple(x.shape[2:])] * 2
    # a whole input of exactly the ROI's size still goes through the source's planner
    small = x[:, :, :12, :12, :12]
    with torch.no_grad():
        pred(small)
    assert calls[-1] == (12, 12, 12)


def test_with_window_shares_network_norm_and_planner() -> None:
    calls: list[tuple[int, ...]] = []
    pred = Predictor(SmallNet(), window=SlidingWindowConfig(roi_size=(12, 12, 12)), norm=ZScoreNorm(4),
                     planner=_plans(calls), output_mode="regions").eval()
    other = pred.with_window(SlidingWindowConfig(roi_size=(12, 12, 12), sw_batch_size=3))
    assert other.network is pred.network and other.norm is pred.norm and other.planner is pred.planner
    assert other.window.sw_batch_size == 3 and not other.training and other.in_channels == 4
