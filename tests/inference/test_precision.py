"""Mixed precision's dtype rules (checked on CPU, where autocast runs bf16 and fp16 too) and float16 gradient
scaling against a float32 autograd oracle."""

from __future__ import annotations

import pytest
import torch
from helpers.windows import cosine, rand
from torch import nn

from volrob.errors import ConfigError
from volrob.inference import precision
from volrob.inference.precision import GradientOverflow, amp_dtype, full_precision, normalise_amp, run_network
from volrob.inference.windowed_grad import sliding_plan, windowed_inference

CPU = torch.device("cpu")


class Probe(nn.Module):
    """Conv, tanh, conv, scaled by ``gain``; records the dtype its first convolution computed in."""

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.gain = nn.Conv3d(4, 6, 3, padding=1), nn.Conv3d(6, 3, 3, padding=1), gain
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        self.seen.append(h.dtype)
        return self.b(torch.tanh(h)) * self.gain



def input_grad(net: nn.Module, x: torch.Tensor, dtype: torch.dtype | None, weight: float) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((run_network(net, xg, dtype) * weight).sum(), xg)
    return grad



def test_modes_normalised_and_bad_values_named() -> None:
    assert [normalise_amp(v) for v in (True, False, "off", "auto", "bf16", "fp16")] == [
        "auto", "off", "off", "auto", "bf16", "fp16"]
    for bad in ("yes", "float16", 1, None):
        with pytest.raises(ConfigError, match=r"^inference\.amp must be one of"):
            normalise_amp(bad)


def test_dtype_per_mode_and_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    assert amp_dtype("off", CPU) is None and amp_dtype("off", cuda) is None
    assert amp_dtype("auto", CPU) is None  # the CPU fallback: float32
    assert amp_dtype("bf16", CPU) == torch.bfloat16 and amp_dtype("fp16", CPU) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert amp_dtype("auto", cuda) == torch.float16  # pre-Ampere GPUs: fp16 with gradient scaling


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_network_runs_reduced_while_output_and_input_gradient_stay_float32(dtype: torch.dtype) -> None:
    net, x = Probe().eval(), rand(2, 4, 8, 8, 8)
    xg = x.clone().requires_grad_(True)
    out = run_network(net, xg, dtype)
    assert net.seen[-1] == dtype and out.dtype == torch.float32
    (grad,) = torch.autograd.grad(out.square().sum(), xg)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
    ref = run_network(net, x, None).detach()
    assert net.seen[-1] == torch.float32
    tol = 0.03 if dtype == torch.bfloat16 else 0.005  # relative to the logits' scale
    assert float((out.detach() - ref).abs().max()) <= tol * float(ref.detach().abs().max())
    assert cosine(grad, input_grad_sq(net, x)) >= 0.99


def input_grad_sq(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(run_network(net, xg, None).square().sum(), xg)
    return grad


def test_fp16_gradient_scaling_recovers_gradients_that_underflow_unscaled() -> None:
    """A loss averaged over many voxels gives output gradients near 1e-9: plain float16 autocast returns zeros;
    the scaled backward matches float32 autograd."""
    net, x, weight = Probe().eval(), rand(1, 4, 8, 8, 8), 1e-9
    ref = input_grad(net, x, None, weight)
    xg = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.float16):
        unscaled = net(xg)
    (plain,) = torch.autograd.grad((unscaled.float() * weight).sum(), xg)
    assert float(plain.abs().max()) == 0.0  # the problem scaling solves
    scaled = input_grad(net, x, torch.float16, weight)
    assert scaled.dtype == torch.float32
    assert cosine(scaled, ref) >= 0.999
    assert float((scaled - ref).norm() / ref.norm()) <= 0.02


def test_fp16_overflow_raises_and_windowed_gradient_recomputes_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = Probe(gain=200.0).eval(), rand(1, 4, 8, 8, 8)
    monkeypatch.setattr(precision, "GRAD_TARGET_EXP", 15)  # 2**15 at the output, times the gain: past 65504
    with pytest.raises(GradientOverflow, match="inference.amp=bf16 or off"):
        input_grad(net, x, torch.float16, 1.0)

    class Fp16(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return run_network(net, w, torch.float16)

    plan = sliding_plan((8, 8, 12), (8, 8, 8), 0.5, "gaussian", device=CPU, stitch_device=CPU, dtype=torch.float32)
    xw = rand(1, 4, 8, 8, 12)
    xg, xr = xw.clone().requires_grad_(True), xw.clone().requires_grad_(True)
    (g16,) = torch.autograd.grad(windowed_inference(Fp16(), xg, plan, 2).sum(), xg)
    with full_precision():
        (g32,) = torch.autograd.grad(windowed_inference(Fp16(), xr, plan, 2).sum(), xr)
    torch.testing.assert_close(g16, g32)  # every window fell back to float32: the float32 gradient exactly


def test_full_precision_block_turns_autocast_off() -> None:
    net, x = Probe().eval(), rand(1, 4, 8, 8, 8)
    with full_precision():
        out = run_network(net, x, torch.bfloat16)
    assert net.seen[-1] == torch.float32
    torch.testing.assert_close(out, net(x))
    run_network(net, x, torch.bfloat16)
    assert net.seen[-1] == torch.bfloat16  # the block ended
