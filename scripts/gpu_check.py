"""The GPU check: every CUDA path of volrob exercised once, within a time budget, reported as one JSON object.

Sections, in order (each records its seconds; once the budget is spent the rest are recorded as skipped):

- ``environment``: torch, CUDA, cuDNN, the GPU, bfloat16 support, whether ``mamba_ssm`` imports.
- ``gpu_tests``: ``pytest -m gpu`` (the tests that skip on CPU), with the counts from its JUnit report.
- ``training``: a short training run with AMP on synthetic volumes, then ``evaluation``: the engine's evaluation
  of its checkpoint on the GPU.
- ``gradients``: the input gradient of an attack loss through the exact windowed predictor against plain autograd
  on the GPU (float32 and bfloat16), one PGD step and one VAFA step crafted both ways, time and peak memory each.
- ``mamba``: the Mamba-style model's output and input gradient with ``mamba_ssm``'s fused kernel against the
  PyTorch scan (when the kernel imports), and their times.
- ``throughput``: ``scripts/bench_gpu_pgd.py`` (20-step PGD on a 240x240x155 volume with paper-size UNETR, and the
  fraction of the network's raw forward+backward throughput it reaches) and ``scripts/bench_scaling.py`` on CUDA.

Usage: python scripts/gpu_check.py [--budget SECONDS] [--out FILE] [--skip SECTION ...] [--quick]
``--quick`` shrinks every size (a plumbing check that also runs on CPU with ``--device cpu``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # this file may be loaded by path, outside sys.path
import _bench_common as common  # noqa: E402

SECTIONS = ("environment", "gpu_tests", "training", "evaluation", "gradients", "mamba", "throughput")


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    common.sync(device)
    tic = time.perf_counter()
    out = fn()
    common.sync(device)
    return out, round(time.perf_counter() - tic, 3)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().flatten().cpu(), b.detach().double().flatten().cpu()
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def environment(args: argparse.Namespace, device: torch.device, work: Path) -> dict[str, Any]:
    from volrob.models.mamba.scan import _load_mamba_ssm_kernel

    out: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                           "cuda": torch.version.cuda, "device": str(device),
                           "mamba_ssm_kernel": _load_mamba_ssm_kernel() is not None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update({"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                    "memory_gb": round(props.total_memory / 2**30, 1), "bf16": torch.cuda.is_bf16_supported(),
                    "cudnn": torch.backends.cudnn.version()})
    try:
        import monai

        out["monai"] = monai.__version__
    except ImportError:
        out["monai"] = None
    return out


def gpu_tests(args: argparse.Namespace, device: torch.device, work: Path) -> dict[str, Any]:
    report = work / "gpu_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={report}",
           "tests"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    out: dict[str, Any] = {"command": " ".join(["python", *cmd[1:-2], "tests"]), "exit_code": proc.returncode}
    if report.is_file():
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        out.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
        out["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                         if c.find("failure") is not None or c.find("error") is not None]
    if proc.returncode not in (0, 5):
        out["tail"] = proc.stdout[-3000:]
    return out


def training(args: argparse.Namespace, device: torch.device, work: Path) -> dict[str, Any]:
    from volrob.data.synth import synthesize
    from volrob.training.config import TrainConfig
    from volrob.training.trainer import Trainer
    from volrob.utils.config import build_dataclass

    shape = (48, 48, 48) if args.quick else (96, 96, 96)
    synthesize(work / "synth", cases=6, shape=shape, seed=3, val_fraction=0.2, test_fraction=0.2)
    cfg = build_dataclass(TrainConfig, {
        "seed": 1, "output_dir": str(work / "train"), "model": {"name": "unet", "preset": "tiny"},
        "data": {"manifest": str(work / "synth" / "manifest.json")},
        "train": {"epochs": 2 if args.quick else 4, "batch_size": 2, "crops_per_case": 2, "lr": 0.01,
                  "val_every": 1, "amp": True, "device": str(device)},
        "inference": {"roi_size": [32, 32, 32] if args.quick else [64, 64, 64], "overlap": 0.25,
                      "sw_batch_size": 4},
    })
    result, seconds = _timed(lambda: Trainer(cfg, progress=False).run(), device)
    from volrob.inference.precision import amp_dtype

    with (work / "train" / "log.csv").open(newline="") as fh:
        last = list(csv.DictReader(fh))[-1]
    args.checkpoint = result.best_checkpoint
    args.manifest = work / "synth" / "manifest.json"
    return {"seconds": seconds, "amp_dtype": str(amp_dtype("auto", device)), "epochs": cfg.train.epochs,
            "best_val_dice": round(result.best_val_dice, 4), "last_epoch": last, "volume": list(shape)}


def evaluation(args: argparse.Namespace, device: torch.device, work: Path) -> dict[str, Any]:
    if getattr(args, "checkpoint", None) is None:
        return {"skipped": "no checkpoint: the training section did not run"}
    cmd = [sys.executable, "-m", "volrob", "evaluate", "--checkpoint", str(args.checkpoint), "--manifest",
           str(args.manifest), "--split", "test", "-o", str(work / "eval"), "--device", str(device), "--quiet",
           "--set", "window.amp=bf16"]
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    out: dict[str, Any] = {"exit_code": proc.returncode, "seconds": round(time.perf_counter() - tic, 2),
                           "window": "amp=bf16"}
    run = work / "eval" / "run.json"
    if run.is_file():
        rec = json.loads(run.read_text())
        out["fast_path"] = next(iter(rec.get("models", {}).values()), {}).get("fast_path")
    summary = work / "eval" / "summary.csv"
    if summary.is_file():
        out["summary_head"] = summary.read_text().splitlines()[:5]
    if proc.returncode:
        out["tail"] = (proc.stdout + proc.stderr)[-2000:]
    return out


def _gradient_pair(net: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, roi: int,
                   device: torch.device, amp: str) -> dict[str, Any]:
    from volrob.inference.predictor import Predictor, SlidingWindowConfig

    out: dict[str, Any] = {}
    grads: dict[str, torch.Tensor] = {}
    for mode in ("exact", "autograd"):
        pred = Predictor(net, mean=[0.4] * 4, std=[0.2] * 4, window=SlidingWindowConfig(
            roi_size=(roi,) * 3, gradient=mode, amp=amp, sw_batch_size=4, grad_batch_size=4)).to(device).eval()

        def step(pred: Predictor = pred) -> torch.Tensor:
            xg = x.clone().requires_grad_(True)
            value = torch.nn.functional.binary_cross_entropy_with_logits(pred(xg), target)
            (g,) = torch.autograd.grad(value, xg)
            return g

        step()  # warm-up (cuDNN autotuning, allocator)
        _reset_peak(device)
        grads[mode], seconds = _timed(step, device)
        out[mode] = {"seconds": seconds, "peak_mb": _peak_mb(device)}
    out["rel_err_exact_vs_autograd"] = _rel(grads["exact"], grads["autograd"])
    out["cosine_exact_vs_autograd"] = _cos(grads["exact"], grads["autograd"])
    return out


def gradients(args: argparse.Namespace, device: torch.device, work: Path) -> dict[str, Any]:
    from volrob import attacks
    from volrob.inference.predictor import Predictor, SlidingWindowConfig
    from volrob.models import create

    roi, shape = (32, (64, 56, 48)) if args.quick else (96, (160, 192, 160))
    torch.manual_seed(0)
    net = create("unet", in_channels=4, out_channels=3, roi_size=(roi,) * 3, preset="paper").to(device).eval()
    x = _rand(1, 4, *shape).to(device)
    target = (_rand(1, 3, *shape, seed=1) > 0.8).float().to(device)
    out: dict[str, Any] = {"model": "unet paper", "volume": list(shape), "roi": roi,
                           "float32": _gradient_pair(net, x, target, roi, device, "off"),
                           "bf16": _gradient_pair(net, x, target, roi, device, "bf16")}
    for name, opts in (("pgd", {"eps": 8, "steps": 1, "random_start": False}),
                       ("vafa3d", {"steps": 1, "q_max": 20})):
        adv: dict[str, torch.Tensor] = {}
        rec: dict[str, Any] = {}
        for mode in ("exact", "autograd"):
            pred = Predictor(net, mean=[0.4] * 4, std=[0.2] * 4, window=SlidingWindowConfig(
                roi_size=(roi,) * 3, gradient=mode, sw_batch_size=4, grad_batch_size=4)).to(device).eval()
            atk = attacks.create(name, seed=0, **opts)
            _reset_peak(device)
            res, seconds = _timed(lambda atk=atk, pred=pred: atk.run(pred, x, target), device)
            adv[mode] = res.x_adv
            rec[mode] = {"seconds": seconds, "peak_mb": _peak_mb(device)}
        diff = (adv["exact"] - adv["autograd"]).abs()
        rec["max_abs_diff_x_adv"] = float(diff.max())
        rec["fraction_voxels_equal"] = float((diff == 0).float().mean())
        out[name] = rec
    return out


def mamba(args: argparse.Namespace, device: torch.device, work: Path) -> dict[str, Any]:
    from volrob.models import create
    from volrob.models.mamba.scan import _load_mamba_ssm_kernel, pytorch_scan

    roi = 32 if args.quick else 64
    torch.manual_seed(0)
    net = create("umamba", in_channels=4, out_channels=3, roi_size=(roi,) * 3,
                 preset="tiny" if args.quick else "paper").to(device).eval()
    x = _rand(2, 4, roi, roi, roi).to(device)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        xg = x.clone().requires_grad_(True)
        y = net(xg)
        (g,) = torch.autograd.grad(y.square().mean(), xg)
        return y.detach(), g

    out: dict[str, Any] = {"kernel_available": _load_mamba_ssm_kernel() is not None and device.type == "cuda",
                           "input": [2, 4, roi, roi, roi]}
    with pytorch_scan():
        run()
        (y_ref, g_ref), out["pytorch_seconds"] = _timed(run, device)
    if out["kernel_available"]:
        run()
        (y_k, g_k), out["kernel_seconds"] = _timed(run, device)
        out["rel_err_output"] = _rel(y_k, y_ref)
        out["rel_err_input_grad"] = _rel(g_k, g_ref)
        out["speedup"] = round(out["pytorch_seconds"] / max(out["kernel_seconds"], 1e-9), 2)
    else:
        out["kernel_note"] = ("mamba_ssm does not import here: only the PyTorch scan ran (the kernel needs "
                              "mamba-ssm built for this torch and CUDA)")
    return out


def _script_json(cmd: list[str]) -> dict[str, Any]:
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, check=False)
    out: dict[str, Any] = {"command": "python " + " ".join(cmd), "exit_code": proc.returncode,
                           "seconds": round(time.perf_counter() - tic, 1)}
    try:
        out["result"] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out["tail"] = (proc.stdout + proc.stderr)[-2000:]
    return out


def throughput(args: argparse.Namespace, device: torch.device, work: Path) -> dict[str, Any]:
    dev = ["--device", str(device)]
    if args.quick:
        return {"pgd": _script_json(["scripts/bench_gpu_pgd.py", "--quick", *dev]),
                "scaling": _script_json(["scripts/bench_scaling.py", "--quick", *dev])}
    return {"pgd_bf16": _script_json(["scripts/bench_gpu_pgd.py", *dev, "--window", "amp=bf16", "--window",
                                      "sw_batch_size=4", "--window", "grad_batch_size=4"]),
            "scaling": _script_json(["scripts/bench_scaling.py", *dev])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=450.0, help="seconds after which remaining sections are skipped")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="small sizes everywhere (plumbing check)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device: torch.cuda.is_available() is False", "torch": torch.__version__}))
        return 2
    device = torch.device(args.device)
    start = time.perf_counter()
    report: dict[str, Any] = {"budget_seconds": args.budget, "sections": {}}
    sections = {"environment": environment, "gpu_tests": gpu_tests, "training": training, "evaluation": evaluation,
                "gradients": gradients, "mamba": mamba, "throughput": throughput}
    with tempfile.TemporaryDirectory(prefix="volrob-gpu-check-") as tmp:
        for name, fn in sections.items():
            elapsed = time.perf_counter() - start
            if name in args.skip:
                report["sections"][name] = {"skipped": "--skip"}
                continue
            if elapsed > args.budget and name != "environment":  # what ran where is always recorded
                report["sections"][name] = {"skipped": f"time budget spent ({elapsed:.0f} s)"}
                continue
            print(f"[gpu_check] {name} (t={elapsed:.0f} s)", file=sys.stderr, flush=True)
            tic = time.perf_counter()
            try:
                result = fn(args, device, Path(tmp))
            except Exception as err:  # a broken section is a finding, not the end of the check
                result = {"error": f"{type(err).__name__}: {err}"}
            result["section_seconds"] = round(time.perf_counter() - tic, 1)
            report["sections"][name] = result
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(report, indent=1, default=str)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp_out.write_text(text + "\n")
        os.replace(tmp_out, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
