"""The precision-agreement script: its figures are consistent and within the stated tolerances; bad input."""

from __future__ import annotations

import json

import pytest
from script_loader import load_script


def test_figures_hold_the_stated_tolerances(capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("precision_agreement")
    assert script.main(["--shape", "28", "24", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["command"] == "python scripts/precision_agreement.py --shape 28 24 20"
    assert out["tolerances"] == {"max_logit_diff_over_range": 0.05, "grad_cosine": 0.98, "same_regions": 0.99}
    assert set(out["precisions"]) == {"bf16", "fp16"}
    for row in out["precisions"].values():
        assert 0 < row["max_logit_diff_over_range"] <= 0.05
        assert 0.98 <= row["grad_cosine"] <= 1 + 1e-9 and 0.99 <= row["same_regions"] <= 1
        assert row["exact_vs_autograd_cosine"] >= 0.9999
        assert row["within_tolerance"] == {"max_logit_diff_over_range": True, "grad_cosine": True,
                                           "same_regions": True}


@pytest.mark.parametrize("argv", [["--shape", "0", "8", "8"], ["--device", "cuda"]])
def test_bad_arguments_are_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if argv[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert load_script("precision_agreement").main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
