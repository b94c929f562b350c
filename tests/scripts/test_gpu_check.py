"""The GPU check's driver: its refusal without CUDA, its report's shape, and its time budget (on CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def run(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp)})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda(tmp_path: Path) -> None:
    proc = run(tmp=tmp_path)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"].startswith("no CUDA device")


def test_report_has_every_section_and_honours_the_budget(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    proc = run("--quick", "--device", "cpu", "--budget", "0", "--skip", "gpu_tests", "--out", str(out), tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report == json.loads(out.read_text())
    sections = report["sections"]
    assert list(sections) == ["environment", "gpu_tests", "training", "evaluation", "gradients", "mamba",
                              "throughput"]
    env = sections["environment"]  # what ran where is recorded whatever the budget
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["mamba_ssm_kernel"] is False
    assert sections["gpu_tests"] == {"skipped": "--skip"}
    assert all(v["skipped"].startswith("time budget spent") for k, v in sections.items()
               if k not in ("environment", "gpu_tests"))


@pytest.mark.slow
def test_quick_cpu_run_of_every_section(tmp_path: Path) -> None:
    proc = run("--quick", "--device", "cpu", "--skip", "gpu_tests", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sections = json.loads(proc.stdout)["sections"]
    assert all("error" not in v and "skipped" not in v for k, v in sections.items() if k != "gpu_tests"), sections
    mamba = sections["mamba"]
    assert mamba["kernel_available"] is False and "kernel_note" in mamba and mamba["pytorch_seconds"] > 0
    grads = sections["gradients"]
    assert grads["float32"]["rel_err_exact_vs_autograd"] <= 1e-5
    assert grads["pgd"]["max_abs_diff_x_adv"] == 0.0
    assert sections["evaluation"]["exit_code"] == 0
    assert sections["evaluation"]["fast_path"]["amp_dtype"] == "bfloat16"
