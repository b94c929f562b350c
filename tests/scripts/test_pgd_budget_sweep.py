"""scripts/pgd_budget_sweep.py: one engine run on one case; the printed JSON is the run's own rows and records, the
case index picks the split's case in manifest order, a bad index exits 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from script_loader import load_script


def _script() -> ModuleType:
    return load_script("pgd_budget_sweep")


def test_sweep_reports_the_runs_rows(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path, one_thread: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--split", "train",
            "--case", "1", "--eps", "4", "8", "--steps", "2", "--loss", "bce", "-o", str(out), "--quiet"]
    assert _script().main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    manifest = json.loads(synth_manifest.read_text())
    assert report["case"] == [c["id"] for c in manifest["cases"] if c["split"] == "train"][1]
    assert report["attack"] == "pgd" and report["options"] == {"steps": 2, "loss": "bce"}
    results = pd.read_csv(out / "results.csv")
    assert set(results["case"]) == {report["case"]}
    dice = results[results.metric == "dice"]
    assert report["clean"] == {r: round(float(v), 4) for r, v in dice.groupby("region")["clean"].first().items()}
    assert [b["eps"] for b in report["budgets"]] == [4, 8]
    for budget in report["budgets"]:
        mine = dice[dice.eps == budget["eps"]].set_index("region")
        assert budget["dice"] == {r: round(float(mine.at[r, "adversarial"]), 4) for r in ("TC", "WT", "ET")}
        assert budget["ssim"] == round(float(mine["ssim"].iloc[0]), 4)
        unit = json.loads(next((out / "units" / mine["cell"].iloc[0]).glob("*.json")).read_text())
        loss = unit["record"]["loss"]
        assert len(loss) == 2 and budget["loss_first_last"] == [loss[0], loss[-1]]
        assert unit["record"]["params"]["loss"] == "bce" and unit["record"]["params"]["steps"] == 2
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "robustness" and run["config"]["cases"] == [report["case"]]
    assert _script().main(argv) == 0  # the kept folder resumes: nothing recomputed, the same report
    assert json.loads(capsys.readouterr().out) == report
    assert json.loads((out / "run.json").read_text())["computed_now"] == 0


def test_budget_entries() -> None:
    entry = _script().attack_entry
    assert entry("vafa3d", 10, "auto", [8], [20, 40]) == {"attack": "vafa3d", "options": {"steps": 10},
                                                          "sweep": {"q_max": [20, 40]}}
    assert entry("fgsm", 10, "bce", [4], None) == {"attack": "fgsm", "options": {"loss": "bce"}, "eps": [4]}
    assert entry("segpgd", 5, "bce", [8], None) == {"attack": "segpgd", "options": {"steps": 5}, "eps": [8]}


def test_bad_case_index_is_one_line_exit_2(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = _script().main(["--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--split", "test",
                           "--case", "9", "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "--case 9" in err and "\n" not in err
    assert not (tmp_path / "run").exists()
