"""The predictor: normalisation inside, sliding window equal to a direct pass where it must be, gradients."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from volrob.errors import ConfigError
from volrob.inference.predictor import Predictor, SlidingWindowConfig


class PointwiseNet(nn.Module):
    """A 1x1x1 conv: sliding-window stitching of a pointwise net must equal the direct pass exactly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def make(roi: tuple[int, int, int] = (16, 16, 16), **kw: object) -> Predictor:
    return Predictor(PointwiseNet(), mean=[0.1, 0.2, 0.3, 0.4], std=[0.5, 0.5, 0.25, 2.0],
                     window=SlidingWindowConfig(roi_size=roi, **kw)).eval()


def test_normalisation_inside() -> None:
    pred, x = make(), rand(1, 4, 16, 16, 16)
    mean = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 4, 1, 1, 1)
    std = torch.tensor([0.5, 0.5, 0.25, 2.0]).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(pred(x), pred.network((x - mean) / std))


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_sliding_window_equals_direct_for_pointwise_net(mode: str) -> None:
    pred, x = make(mode=mode, overlap=0.5), rand(2, 4, 24, 20, 18)
    direct = pred.network(pred.normalise(x))
    torch.testing.assert_close(pred(x), direct, atol=1e-5, rtol=1e-5)


def test_matches_monai_directly_and_stitch_device() -> None:
    pred, x = make(overlap=0.25, sw_batch_size=3), rand(1, 4, 30, 17, 21)
    ref = sliding_window_inference(pred.normalise(x), (16, 16, 16), 3, pred.network, overlap=0.25, mode="gaussian")
    torch.testing.assert_close(pred(x), ref)
    cpu = Predictor(pred.network, mean=[0.1, 0.2, 0.3, 0.4], std=[0.5, 0.5, 0.25, 2.0],
                    window=SlidingWindowConfig(roi_size=(16, 16, 16), overlap=0.25, sw_batch_size=3,
                                               stitch_device="cpu"))
    torch.testing.assert_close(cpu(x), ref)


def test_batch_consistency_and_input_untouched() -> None:
    pred, x = make(), rand(3, 4, 20, 20, 20)
    copy = x.clone()
    full = pred(x)
    assert torch.equal(x, copy)
    for i in range(3):
        torch.testing.assert_close(pred(x[i : i + 1]), full[i : i + 1])


def test_gradient_reaches_input() -> None:
    pred, x = make(), rand(1, 4, 20, 20, 20).requires_grad_(True)
    pred(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_input_and_config() -> None:
    with pytest.raises(ConfigError, match=r"expects input \(B, 4, D, H, W\)"):
        make()(rand(1, 3, 16, 16, 16))
    with pytest.raises(ConfigError, match="overlap"):
        SlidingWindowConfig(overlap=1.0)
    with pytest.raises(ConfigError, match="mode"):
        SlidingWindowConfig(mode="mean")
    with pytest.raises(ConfigError, match="sw_batch_size"):
        SlidingWindowConfig(sw_batch_size=0)
    with pytest.raises(ConfigError, match="std"):
        Predictor(PointwiseNet(), mean=[0.0] * 4, std=[1.0, 0.0, 1.0, 1.0], window=SlidingWindowConfig())
    with pytest.raises(ConfigError, match="unknown key"):
        SlidingWindowConfig.from_dict({"roi": [1, 2, 3]})


def test_gradient_and_amp_options_validated_and_round_trip() -> None:
    with pytest.raises(ConfigError, match=r"inference\.gradient must be one of"):
        SlidingWindowConfig(gradient="checkpoint")
    with pytest.raises(ConfigError, match=r"inference\.amp must be one of \['off', 'auto', 'bf16', 'fp16'\]"):
        SlidingWindowConfig(amp="yes")
    cfg = SlidingWindowConfig(gradient="tiles", amp=True)  # earlier configs: a bool
    assert cfg.amp == "auto" and SlidingWindowConfig(amp=False).amp == "off"
    assert SlidingWindowConfig.from_dict(cfg.to_dict()) == cfg
    assert SlidingWindowConfig().gradient == "exact" and SlidingWindowConfig().amp == "off"


@pytest.mark.parametrize("gradient", ["exact", "autograd", "tiles"])
def test_every_gradient_mode_equals_direct_pass_for_pointwise_net(gradient: str) -> None:
    """A pointwise net is window-independent, so all modes give the direct pass and its input gradient."""
    pred, x = make(gradient=gradient, overlap=0.5), rand(2, 4, 24, 20, 11)
    xg, xd = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = pred(xg)
    direct = pred.network(pred.normalise(xd))
    torch.testing.assert_close(out, direct, atol=1e-5, rtol=1e-5)
    weight = rand(*direct.shape, seed=4)
    (out * weight).sum().backward()
    (direct * weight).sum().backward()
    assert xg.grad is not None and xd.grad is not None
    torch.testing.assert_close(xg.grad, xd.grad, atol=1e-5, rtol=1e-5)
