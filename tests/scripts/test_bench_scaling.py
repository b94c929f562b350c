"""scripts/bench_scaling.py: window counts are MONAI's layout (computed here from MONAI itself), the JSON's structure
and the arithmetic of its ratios, the window passes each mode runs, the exact step's peak memory below naive
autograd's at the largest quick size (slow), pure helpers, and bad arguments as one line with exit code 2. Never
a timing threshold."""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import pytest
from helpers.windows import monai_windows
from script_loader import load_script


def _script() -> ModuleType:
    return load_script("bench_scaling")


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert _script().main(argv) == 0
    return dict(json.loads(capsys.readouterr().out))


def _check_entry(entry: dict[str, Any], roi: int) -> None:
    """What holds for every size, whatever the timings."""
    shape = entry["shape"]
    assert entry["volume"] == [1, 4, *shape] and entry["voxels"] == math.prod(shape)
    windows = monai_windows(shape, roi)
    assert entry["windows"] == windows
    fwd, naive, exact = entry["forward"], entry["naive"], entry["exact"]
    for m in (fwd, naive, exact):
        assert m["seconds"] > 0 and m["cold_seconds"] > 0 and m["page_faults_mb"] >= 0
    assert fwd["window_passes"] == naive["window_passes"] == windows
    # the exact step: a graph-free forward over every window, then one recompute per window (one direct call when
    # the input has the ROI's size)
    assert exact["window_passes"] == (2 * windows if windows > 1 else 1)
    assert entry["path"].startswith("windowed" if windows > 1 else "direct")
    r = entry["ratios"]
    assert r["exact_over_naive_time"] == pytest.approx(exact["seconds"] / naive["seconds"])
    assert r["exact_over_naive_cold_time"] == pytest.approx(exact["cold_seconds"] / naive["cold_seconds"])
    assert r["exact_over_floor_time"] == pytest.approx(exact["seconds"] / (naive["seconds"] + fwd["seconds"]))
    assert r["exact_over_floor_time"] < r["exact_over_naive_time"]
    # a peak is ru_maxrss above the baseline: it can stay at 0 when a small step reuses memory freed during set-up
    for key, num, den in (("exact_over_naive_peak", exact, naive), ("exact_over_forward_peak", exact, fwd),
                          ("naive_over_forward_peak", naive, fwd)):
        assert num["peak_mb"] >= 0
        assert r[key] == (pytest.approx(num["peak_mb"] / den["peak_mb"]) if den["peak_mb"] > 0 else None)


def test_window_counts_are_monais_layout() -> None:
    common = _script().common
    quick = [common.window_count(s, (32,) * 3, 0.5) for s in _script().QUICK_SIZES]
    full = [common.window_count(s, (96,) * 3, 0.5) for s in _script().FULL_SIZES]
    assert quick == [monai_windows(s, 32) for s in _script().QUICK_SIZES] == [1, 12, 75]
    assert full == [monai_windows(s, 96) for s in _script().FULL_SIZES] == [1, 27, 48]
    assert common.window_count((20, 40, 32), (32,) * 3, 0.5) == monai_windows((20, 40, 32), 32) == 2  # padded


def test_pure_helpers() -> None:
    common = _script().common
    assert common.parse_size("96") == (96, 96, 96) and common.parse_size("160x192X160") == (160, 192, 160)
    for bad in ("0", "12x12", "axbxc", "1x2x-3"):
        with pytest.raises(common.BenchArgError):
            common.parse_size(bad)
    assert common.parse_window_overrides(["amp=bf16", "sw_batch_size=4", "roi_size=64,64,64", "overlap=0.25",
                                          "channels_last=off", "stitch_device=null", "compile=true"]) == {
        "amp": "bf16", "sw_batch_size": 4, "roi_size": [64, 64, 64], "overlap": 0.25, "channels_last": "off",
        "stitch_device": None, "compile": True}
    with pytest.raises(common.BenchArgError, match="KEY=VALUE"):
        common.parse_window_overrides(["amp"])
    with pytest.raises(common.BenchArgError, match="gradient"):
        common.parse_window_overrides(["gradient=exact"], reserved=("gradient",))
    window = common.window_config(32, {"sw_batch_size": 3}, gradient="autograd")
    assert (window.roi_size, window.overlap, window.mode, window.sw_batch_size, window.gradient) == (
        (32, 32, 32), 0.5, "gaussian", 3, "autograd")
    assert common.command_line("elsewhere/bench_scaling.py", ["--quick", "--window", "amp=a b"]) == (
        "python scripts/bench_scaling.py --quick --window 'amp=a b'")


def test_size_entry_ratios() -> None:
    m = {"forward": {"seconds": 1.0, "cold_seconds": 2.0, "peak_mb": 100.0},
         "naive": {"seconds": 4.0, "cold_seconds": 8.0, "peak_mb": 800.0},
         "exact": {"seconds": 6.0, "cold_seconds": 6.0, "peak_mb": 140.0}}
    entry = _script().size_entry((10, 20, 30), 27, m)
    assert entry["voxels"] == 6000 and entry["windows"] == 27 and entry["volume"] == [1, 4, 10, 20, 30]
    assert entry["ratios"] == pytest.approx({
        "exact_over_naive_time": 1.5, "exact_over_naive_cold_time": 0.75, "exact_over_floor_time": 1.2,
        "naive_over_forward_peak": 8.0, "exact_over_forward_peak": 1.4, "exact_over_naive_peak": 0.175})
    m["forward"]["peak_mb"] = 0.0  # a forward that never rose above the baseline: no ratio, not a division error
    assert _script().size_entry((10, 20, 30), 27, m)["ratios"]["exact_over_forward_peak"] is None


@pytest.mark.slow  # three measurement processes (about 17 s); the helpers above are checked in the default suite
def test_one_size_runs_and_the_json_holds_together(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, ["--quick", "--sizes", "40x40x32"])  # one thread: --quick on CPU
    assert out["benchmark"] == "bench_scaling" and out["model"] == "unet" and out["preset"] == "tiny"
    assert out["peak_memory"] == "ru_maxrss" and out["device"] == "cpu" and out["host_memory"] == "system"
    assert out["window"]["roi_size"] == [32, 32, 32] and out["window"]["sw_batch_size"] == 2
    assert out["window"]["overlap"] == 0.5 and out["window"]["mode"] == "gaussian"
    assert out["torch_threads"] == 1 and out["cpu_count"] >= 1 and out["torch"]
    assert len(out["loadavg_start"]) == len(out["loadavg_end"]) == 3
    assert out["command"] == "python scripts/bench_scaling.py --quick --sizes 40x40x32"
    (entry,) = out["sizes"]
    assert entry["shape"] == [40, 40, 32] and entry["windows"] == 4
    _check_entry(entry, 32)


@pytest.mark.slow
def test_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, ["--quick"])
    assert [e["shape"] for e in out["sizes"]] == [[32, 32, 32], [48, 56, 48], [96, 96, 64]]
    assert [e["windows"] for e in out["sizes"]] == [1, 12, 75]
    for entry in out["sizes"]:
        _check_entry(entry, 32)
    largest = out["sizes"][-1]
    assert largest["exact"]["peak_mb"] < largest["naive"]["peak_mb"]  # naive keeps 75 window graphs, exact one
    assert largest["ratios"]["exact_over_naive_peak"] < 1


@pytest.mark.parametrize("argv", [
    ["--sizes", "0x3x3"],
    ["--sizes", "40x40"],
    ["--window", "gradient=autograd"],
    ["--window", "amp"],
    ["--window", "no_such_key=1"],
    ["--window", "overlap=1.5"],
    ["--model", "mamba"],
    ["--model", "unetr", "--roi", "40"],
    ["--device", "tpu"],
    ["--roi", "0"],
    ["--threads", "0"],
    ["--host-memory", "huge"],
])
def test_bad_arguments_are_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--quick", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and captured.out == ""
