"""The fast path on a CUDA GPU: agreement with float32 and with the CPU, the exact gradient against autograd on
the GPU, host stitching, pinned copies and AMP training. Marked ``gpu``: skipped, with the reason, without CUDA.
Inputs are generated on the CPU and moved, so both devices see the same numbers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.windows import cosine, output_and_grad, rand
from torch import nn

from volrob import attacks
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.models import create
from volrob.utils.transfer import to_device

pytestmark = pytest.mark.gpu
ROI = (32, 32, 32)
LOGIT_TOL, GRAD_COS, REGION_AGREE = 0.05, 0.98, 0.99  # the stated tolerances of reduced precision


def cuda() -> torch.device:
    return torch.device("cuda")


def unet() -> nn.Module:
    torch.manual_seed(3)
    return create("unet", in_channels=4, out_channels=3, roi_size=ROI, preset="tiny").eval()


def predictor(net: nn.Module, device: torch.device, **window: Any) -> Predictor:
    window = {"channels_last": "off", "cudnn_benchmark": "off", **window}
    return Predictor(net, mean=[0.4] * 4, std=[0.2] * 4,
                     window=SlidingWindowConfig(roi_size=ROI, **window)).to(device).eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture()
def strict_float32() -> Iterator[None]:
    """True float32 on the GPU (no TF32 in convolutions or matrix products) for one test, restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_gpu_float32_matches_cpu_and_exact_matches_autograd(strict_float32: None) -> None:
    x = rand(1, 4, 56, 48, 40)
    out_cpu, g_cpu = output_and_grad(predictor(unet(), torch.device("cpu")), x)
    out_gpu, g_gpu = output_and_grad(predictor(unet(), cuda()), x.to(cuda()))
    assert rel_err(out_gpu.cpu(), out_cpu) <= 1e-4 and rel_err(g_gpu.cpu(), g_cpu) <= 1e-3
    _, g_naive = output_and_grad(predictor(unet(), cuda(), gradient="autograd"), x.to(cuda()))
    assert rel_err(g_gpu, g_naive) <= 1e-4


@pytest.mark.parametrize("amp", ["bf16", "fp16", "auto"])
def test_reduced_precision_within_stated_tolerance(amp: str) -> None:
    x = rand(1, 4, 56, 48, 40).to(cuda())
    out32, g32 = output_and_grad(predictor(unet(), cuda()), x)
    pred = predictor(unet(), cuda(), amp=amp, channels_last="auto", cudnn_benchmark="auto")
    out, g = output_and_grad(pred, x)
    assert out.dtype == torch.float32 and g.dtype == torch.float32 and torch.isfinite(g).all()
    assert pred.fast_path(cuda()).channels_last and torch.backends.cudnn.benchmark
    assert float((out - out32).abs().max()) <= LOGIT_TOL * float(out32.max() - out32.min())
    assert cosine(g, g32) >= GRAD_COS
    assert float(((out > 0) == (out32 > 0)).float().mean()) >= REGION_AGREE


def test_stitching_in_host_memory_equals_stitching_on_the_gpu() -> None:
    x = rand(1, 4, 56, 48, 40).to(cuda())
    out_g, g_g = output_and_grad(predictor(unet(), cuda()), x)
    out_h, g_h = output_and_grad(predictor(unet(), cuda(), stitch_device="cpu"), x)
    assert out_h.device.type == "cpu" and g_h.device.type == "cuda"
    assert rel_err(out_h, out_g.cpu()) <= 1e-5 and rel_err(g_h, g_g) <= 1e-5


def test_pinned_copy_arrives_intact() -> None:
    t = rand(2, 4, 16, 16, 16)
    moved = to_device(t, cuda())
    assert moved.device.type == "cuda" and torch.equal(moved.cpu(), t)
    assert to_device(moved, cuda()) is moved


def test_pgd_on_gpu_under_bf16_respects_the_budget() -> None:
    x = rand(1, 4, 56, 48, 40).to(cuda())
    target = (rand(1, 3, 56, 48, 40, seed=1) > 0.7).float().to(cuda())
    res = attacks.create("pgd", eps=8, steps=3, seed=0).run(predictor(unet(), cuda(), amp="bf16"), x, target)
    assert res.x_adv.dtype == torch.float32
    assert float((res.x_adv - x).abs().max()) <= 8 / 255 + 1e-6


def test_amp_training_on_gpu(synth_manifest: Path, tmp_path: Path) -> None:
    from volrob.training.config import TrainConfig
    from volrob.training.trainer import Trainer
    from volrob.utils.config import build_dataclass

    cfg = build_dataclass(TrainConfig, {
        "seed": 1, "output_dir": str(tmp_path / "run"), "model": {"name": "unet", "preset": "tiny"},
        "data": {"manifest": str(synth_manifest)},
        "train": {"epochs": 2, "batch_size": 2, "crops_per_case": 2, "lr": 0.01, "val_every": 1, "amp": True,
                  "device": "cuda"},
        "inference": {"roi_size": [32, 32, 32], "overlap": 0.25, "sw_batch_size": 4},
    })
    result = Trainer(cfg, progress=False).run()
    assert result.best_checkpoint.is_file() and 0.0 <= result.best_val_dice <= 1.0
