"""scripts/bench_gpu_pgd.py in its CPU check mode (``--device cpu --quick``): the window count is MONAI's layout,
the window passes the warm-up attack ran are the formula's, the fractions are positive and follow from the
reported rates and seconds, ``--window`` reaches the predictor, and bad arguments are one line with exit code 2.
Never a timing threshold."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest
import torch
from helpers.windows import monai_windows
from script_loader import load_script


def _script() -> ModuleType:
    return load_script("bench_gpu_pgd")


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert _script().main(argv) == 0
    return dict(json.loads(capsys.readouterr().out))


def _check(out: dict[str, Any]) -> None:
    """What holds for every run, whatever the timings."""
    s = out["settings"]
    steps, shape, roi = s["steps"], s["volume"][2:], s["roi"][0]
    n = monai_windows(shape, roi, s["window"]["overlap"])
    assert out["windows"] == n
    passes = out["window_passes"]
    assert passes["per_attack"] == {"graph_free": (steps + 1) * n, "fwd_bwd": steps * n}
    assert passes["warmup_1_step_counted"] == passes["warmup_1_step_expected"] == {"graph_free": 2 * n, "fwd_bwd": n}
    a, raw = out["attack"], out["raw"]
    assert len(a["seconds"]) == s["repeats"] and a["median_seconds"] > 0 and a["peak_mb"] is None  # None on CPU
    assert a["volumes_per_hour"] == pytest.approx(3600 / a["median_seconds"]) == out["volumes_per_hour"]
    assert all(v == v and abs(v) < float("inf") for v in a["loss_first_last"])
    window = s["window"]
    assert raw["forward"]["batch"] == raw["fwd_bwd"]["batch"] == window["sw_batch_size"]
    grad_batch = window.get("grad_batch_size", 1)
    assert ("fwd_bwd_grad_batch" in raw) == (grad_batch != window["sw_batch_size"])
    if "fwd_bwd_grad_batch" in raw:
        assert raw["fwd_bwd_grad_batch"]["batch"] == grad_batch
    for rate in raw.values():
        assert rate["windows_per_s"] == pytest.approx(rate["batch"] * rate["iters"] / rate["seconds"])
    fwd, fb = raw["forward"]["windows_per_s"], raw["fwd_bwd"]["windows_per_s"]
    ideal = steps * n / fb
    floor = ideal + (steps + 1) * n / fwd
    assert out["ideal_fwd_bwd_seconds"] == pytest.approx(ideal) and out["floor_seconds"] == pytest.approx(floor)
    assert out["fraction_of_fwd_bwd"] == pytest.approx(ideal / a["median_seconds"]) and out["fraction_of_fwd_bwd"] > 0
    assert out["fraction_of_floor"] == pytest.approx(floor / a["median_seconds"])
    assert out["fraction_of_floor"] > out["fraction_of_fwd_bwd"]
    assert 0 < out["ceiling_fraction_of_fwd_bwd"] < 1
    assert out["ceiling_fraction_of_fwd_bwd"] == pytest.approx(out["fraction_of_fwd_bwd"] / out["fraction_of_floor"])
    assert out["goal_fraction_of_fwd_bwd"] == 0.70
    assert out["meets_goal"] == (out["fraction_of_fwd_bwd"] >= 0.70)
    assert set(out["formulas"]) >= {"graph_free_passes", "fwd_bwd_passes", "fraction_of_fwd_bwd", "fraction_of_floor"}
    assert s["attack"]["attack"] == "pgd" and s["attack"]["params"]["steps"] == steps
    assert s["attack"]["threat"]["eps"] == s["eps_255"] and window["gradient"] == "exact"
    env = out["environment"]
    assert env["device"] == "cpu" and env["device_name"] == "cpu" and env["torch"] == torch.__version__
    assert len(out["loadavg_start"]) == len(out["loadavg_end"]) == 3


def test_quick_cpu_run(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    out = _run(capsys, ["--device", "cpu", "--quick"])
    assert out["environment"]["torch_threads"] == 1 and torch.get_num_threads() == threads  # --quick: one, restored
    _check(out)
    s = out["settings"]
    assert (s["model"], s["preset"], s["volume"], s["roi"], s["steps"]) == (
        "unetr", "tiny", [1, 4, 48, 48, 32], [32, 32, 32], 2)
    assert out["windows"] == 4 and out["command"] == "python scripts/bench_gpu_pgd.py --device cpu --quick"


@pytest.mark.slow  # a second whole run; test_quick_cpu_run covers the default suite
def test_window_pass_through(capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    argv = ["--device", "cpu", "--quick", "--shape", "56", "56", "32", "--steps", "1", "--raw-iters", "1",
            "--raw-warmup", "0", "--window", "overlap=0.25", "--window", "sw_batch_size=1"]
    out = _run(capsys, argv)
    _check(out)
    assert out["settings"]["window_overrides"] == {"overlap": 0.25, "sw_batch_size": 1}
    assert out["settings"]["window"]["overlap"] == 0.25 and out["raw"]["fwd_bwd"]["batch"] == 1
    assert out["windows"] == monai_windows((56, 56, 32), 32, 0.25) == 4  # 9 at overlap 0.5


def test_pure_helpers() -> None:
    script = _script()
    assert script.expected_passes(20, 48) == {"graph_free": 21 * 48, "fwd_bwd": 20 * 48}
    f = script.fractions(2, 10, attack_seconds=10.0, raw_forward=6.0, raw_fwd_bwd=2.0)
    assert f == pytest.approx({"ideal_fwd_bwd_seconds": 10.0, "floor_seconds": 15.0, "fraction_of_fwd_bwd": 1.0,
                               "fraction_of_floor": 1.5, "ceiling_fraction_of_fwd_bwd": 2 / 3,
                               "volumes_per_hour": 360.0})


@pytest.mark.parametrize("argv", [
    ["--device", "cpu", "--quick", "--steps", "0"],
    ["--device", "cpu", "--quick", "--repeats", "-1"],
    ["--device", "cpu", "--quick", "--eps", "0"],
    ["--device", "cpu", "--quick", "--shape", "32", "32"],
    ["--device", "cpu", "--quick", "--shape", "32", "32", "32"],
    ["--device", "cpu", "--quick", "--window", "gradient=autograd"],
    ["--device", "cpu", "--quick", "--window", "no_such_key=1"],
    ["--device", "cpu", "--quick", "--window", "amp=fp8"],
    ["--device", "cpu", "--quick", "--roi", "24"],
    ["--device", "cpu", "--quick", "--model", "segformer"],
    ["--device", "tpu", "--quick"],
])
def test_bad_arguments_are_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and captured.out == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_default_device_without_cuda_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--quick"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
