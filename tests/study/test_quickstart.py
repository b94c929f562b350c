"""README command 1's study, whole (slow: about 17 minutes on an idle 2-core CPU; ``pytest -m slow``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from volrob.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)  # the study names its training configs relative to the repository root
    out = tmp_path / "quickstart"
    assert main(["run", "configs/studies/quickstart.yaml", "-o", str(out), "--quiet"]) == 0
    index = json.loads((out / "study.json").read_text())
    clean = pd.read_csv(out / index["stages"]["evaluate"] / "summary.csv")
    wt = clean[(clean.region == "WT") & (clean.metric == "dice")].set_index("model")["mean"]
    assert (wt > 0.6).all(), wt.to_dict()  # both architectures learned the synthetic lesions
    grid = pd.read_csv(out / index["stages"]["grid"] / "summary.csv")
    pgd = grid[(grid.attack == "pgd") & (grid.region == "WT") & (grid.metric == "dice")]
    assert (pgd["adversarial_mean"] < pgd["clean_mean"]).all()  # the white-box attack hurts every model
    noise = grid[(grid.attack == "gaussian_noise") & (grid.region == "WT") & (grid.metric == "dice")]
    assert noise["rel_degradation"].abs().max() < 0.05  # noise of the same budget barely matters
    assert (out / index["stages"]["compare"] / "comparison.png").is_file()
    page = (out / "report.html").read_text(encoding="utf-8")
    for section in ("overview", "training", "clean", "whitebox", "transfer", "defences", "worst"):
        assert f'<section id="{section}">' in page
    assert capsys.readouterr().out.rstrip().endswith(f"report: {out / 'report.html'}")
    tic = time.perf_counter()
    assert main(["run", "configs/studies/quickstart.yaml", "-o", str(out), "--quiet"]) == 0
    assert time.perf_counter() - tic < 60  # the second run is served from the cache
