"""The fast path's rules, checked on CPU: what each option resolves to, that the float32 results do not move, that
reduced precision stays within the stated tolerance of float32, and that every option reaches the window loops."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers.windows import cosine, output_and_grad, rand
from torch import nn

from volrob import attacks
from volrob.errors import ConfigError
from volrob.inference import fast_path
from volrob.inference.fast_path import FastNetwork, choose_stitch_device, has_conv3d, resolve_fast_path, stitch_bytes
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.models import create
from volrob.utils.transfer import to_device

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # the CUDA device object only names a device here
ROI = (16, 16, 16)
# Stated tolerances of bfloat16 autocast against float32 (docs/BENCHMARKS.md): logits within 5 % of their range,
# input-gradient cosine >= 0.98, identical regions on >= 99 % of voxels.
LOGIT_TOL, GRAD_COS, REGION_AGREE = 0.05, 0.98, 0.99


def unet() -> nn.Module:
    torch.manual_seed(3)
    return create("unet", in_channels=4, out_channels=3, roi_size=ROI, preset="tiny").eval()


def predictor(net: nn.Module, **window: Any) -> Predictor:
    return Predictor(net, mean=[0.4] * 4, std=[0.2] * 4, window=SlidingWindowConfig(roi_size=ROI, **window)).eval()


def test_options_normalised_and_bad_values_named() -> None:
    cfg = SlidingWindowConfig(channels_last=False, cudnn_benchmark=True, compile=True, amp="bf16")
    assert (cfg.channels_last, cfg.cudnn_benchmark, cfg.compile, cfg.amp) == ("off", "on", "default", "bf16")
    assert SlidingWindowConfig.from_dict(cfg.to_dict()) == cfg
    old = {"roi_size": [8, 8, 8], "overlap": 0.5, "mode": "gaussian", "sw_batch_size": 2, "stitch_device": None,
           "gradient": "exact", "amp": False}  # a checkpoint written before the fast path existed
    assert SlidingWindowConfig.from_dict(old).amp == "off"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"channels_last": "maybe"}, r"inference\.channels_last must be one of \['auto', 'on', 'off'\]"),
        ({"cudnn_benchmark": 2}, r"inference\.cudnn_benchmark must be one of"),
        ({"compile": "fast"}, r"inference\.compile must be one of \['off', 'default', 'reduce-overhead'"),
        ({"grad_batch_size": 0}, r"inference\.grad_batch_size must be an integer >= 1, got 0"),
        ({"grad_batch_size": 1.5}, r"inference\.grad_batch_size must be an integer >= 1"),
        ({"stitch_device": "gpu0"}, r"inference\.stitch_device must be auto or a device name"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ConfigError, match=message):
            SlidingWindowConfig(**kwargs)


def test_every_auto_is_the_float32_path_on_cpu_and_the_fast_path_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    net = unet()
    auto = {"amp": "auto", "channels_last": "auto", "cudnn_benchmark": "auto", "compile": "off"}
    cpu = resolve_fast_path(**auto, device=CPU, network=net)
    assert (cpu.dtype, cpu.channels_last, cpu.cudnn_benchmark) == (None, False, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = resolve_fast_path(**auto, device=CUDA, network=net)
    assert (gpu.dtype, gpu.channels_last, gpu.cudnn_benchmark) == (torch.bfloat16, True, True)
    pointwise = nn.Linear(4, 3)  # no 3D convolution: channels-last would only add copies
    assert not has_conv3d(pointwise) and has_conv3d(net)
    assert not resolve_fast_path(**auto, device=CUDA, network=pointwise).channels_last
    forced = resolve_fast_path(amp="off", channels_last="on", cudnn_benchmark="off", compile="off", device=CPU,
                               network=net)
    assert forced.channels_last and not forced.cudnn_benchmark
    assert gpu.describe() == {"device": "cuda", "amp_dtype": "bfloat16", "channels_last": True,
                              "cudnn_benchmark": True, "compile": "off"}


def test_default_cpu_path_leaves_results_and_global_state_unchanged() -> None:
    net, x = unet(), rand(1, 4, 24, 20, 18)
    before = torch.backends.cudnn.benchmark
    pred = predictor(net)
    with torch.no_grad():
        out = pred(x)
    assert torch.backends.cudnn.benchmark == before
    assert all(p.is_contiguous() for p in net.parameters())
    plain = Predictor(net, mean=[0.4] * 4, std=[0.2] * 4, window=SlidingWindowConfig(roi_size=ROI, amp="off",
                      channels_last="off", cudnn_benchmark="off")).eval()
    with torch.no_grad():
        assert torch.equal(out, plain(x))


def test_channels_last_gives_the_same_numbers() -> None:
    net, x = unet(), rand(2, 4, 16, 16, 16)
    with torch.no_grad():
        ref = net(x)
    fast = FastNetwork(net, resolve_fast_path(amp="off", channels_last="on", cudnn_benchmark="off", compile="off",
                                              device=CPU, network=net))
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        out = fast(x)
    assert out.is_contiguous() and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("gradient", ["exact", "autograd"])
def test_reduced_precision_sliding_window_within_stated_tolerance_of_float32(gradient: str, amp: str) -> None:
    net, x = unet(), rand(1, 4, 28, 24, 20)
    out32, g32 = output_and_grad(predictor(net, gradient=gradient), x)
    out16, g16 = output_and_grad(predictor(net, gradient=gradient, amp=amp), x)
    assert out16.dtype == torch.float32 and g16.dtype == torch.float32
    assert float((out16 - out32).abs().max()) <= LOGIT_TOL * float(out32.max() - out32.min())
    assert cosine(g16, g32) >= GRAD_COS
    agree = float(((out16 > 0) == (out32 > 0)).float().mean())
    assert agree >= REGION_AGREE


def test_bf16_exact_gradient_equals_bf16_autograd() -> None:
    """The exact windowed gradient is still autograd's under reduced precision (the same window computations)."""
    net, x = unet(), rand(1, 4, 28, 24, 20)
    _, exact = output_and_grad(predictor(net, gradient="exact", amp="bf16"), x)
    _, naive = output_and_grad(predictor(net, gradient="autograd", amp="bf16"), x)
    assert cosine(exact, naive) >= 0.9999
    torch.testing.assert_close(exact, naive, rtol=1e-3, atol=1e-3 * float(naive.abs().max()))


def test_pgd_under_bf16_keeps_float32_state_budget_and_input() -> None:
    net, x = unet(), rand(1, 4, 24, 20, 18)
    target = (rand(1, 3, 24, 20, 18, seed=1) > 0.7).float()
    x0 = x.clone()
    res = attacks.create("pgd", eps=8, steps=2, seed=0).run(predictor(net, amp="bf16"), x, target)
    assert torch.equal(x, x0)
    assert res.x_adv.dtype == torch.float32
    assert float((res.x_adv - x).abs().max()) <= 8 / 255 + 1e-6
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    ref = attacks.create("pgd", eps=8, steps=2, seed=0).run(predictor(net), x, target)
    assert float((res.x_adv - ref.x_adv).abs().mean()) <= 8 / 255  # same random start, mostly the same steps


class Counting(nn.Module):
    """A pointwise conv that records the batch size of every call made with a graph."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.grad_batches = nn.Conv3d(4, 3, 1), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.grad_batches.append(int(x.shape[0]))
        return self.conv(x)


@pytest.mark.parametrize("grad_batch_size", [1, 3])
def test_grad_batch_size_reaches_the_backward_recomputation(grad_batch_size: int) -> None:
    net = Counting().eval()
    pred = predictor(net, overlap=0.5, grad_batch_size=grad_batch_size)
    x = rand(1, 4, 32, 24, 16)  # 3 x 2 x 1 windows of 16
    _, g = output_and_grad(pred, x)
    assert net.grad_batches == [grad_batch_size] * (6 // grad_batch_size)
    _, ref = output_and_grad(predictor(Counting().eval(), gradient="autograd"), x)
    torch.testing.assert_close(g, ref)


def test_stitch_device_choice() -> None:
    assert choose_stitch_device("cpu", CUDA, 10) == CPU
    assert choose_stitch_device("auto", CPU, 10**15) == CPU
    assert choose_stitch_device(None, CPU, 10) == CPU
    assert choose_stitch_device("auto", CUDA, 600, free_bytes=lambda d: 1000) == CPU  # over half the free memory
    assert choose_stitch_device("auto", CUDA, 400, free_bytes=lambda d: 1000) == CUDA
    # one 4-channel input with 3 output channels over 10 x 10 x 10: output + count, plus both gradients
    assert stitch_bytes(1, 4, 3, (10, 10, 10), False) == 4 * 1000 * (3 + 1)
    assert stitch_bytes(1, 4, 3, (10, 10, 10), True) == 4 * 1000 * (3 + 1 + 3 + 4)
    assert stitch_bytes(2, 4, 3, (10, 10, 10), True) == 4 * 1000 * (6 + 1 + 6 + 8)


def test_stitch_on_host_gives_the_same_output_and_gradient() -> None:
    net, x = unet(), rand(1, 4, 24, 20, 18)
    out_a, g_a = output_and_grad(predictor(net, stitch_device="auto"), x)
    out_b, g_b = output_and_grad(predictor(net, stitch_device="cpu"), x)
    assert torch.equal(out_a, out_b) and torch.equal(g_a, g_b)


def test_compile_is_built_once_per_device_with_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_compile(module: nn.Module, **kwargs: Any) -> nn.Module:
        calls.append(kwargs)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    net, x = unet(), rand(1, 4, 24, 20, 18)
    pred = predictor(net, compile="max-autotune")
    with torch.no_grad():
        out = pred(x)
        pred(x)
    output_and_grad(pred, x)
    assert calls == [{"mode": "max-autotune", "dynamic": False, "backend": "inductor"}]
    with torch.no_grad():
        torch.testing.assert_close(out, predictor(net)(x))
    assert pred.fast_path(CPU).compile == "max-autotune"


@pytest.mark.slow
def test_torch_compile_matches_eager_on_cpu() -> None:
    """The real inductor backend (compiles C++ on this machine: tens of seconds)."""
    net, x = unet(), rand(1, 4, 24, 20, 18)
    out_c, g_c = output_and_grad(predictor(net, compile="default"), x)
    out_e, g_e = output_and_grad(predictor(net), x)
    torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-4)
    assert cosine(g_c, g_e) >= 0.9999


def test_to_device_leaves_cpu_tensors_alone() -> None:
    t = rand(2, 3)
    assert to_device(t, CPU) is t
    assert fast_path.STITCH_FRACTION == 0.5
