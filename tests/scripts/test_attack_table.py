"""scripts/attack_table.py on the tiny fixtures: checks agree with the engine's raw rows, matched noise, resume (also
by ``volrob robustness``), errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import rankdata
from script_loader import load_script


def _script() -> ModuleType:
    return load_script("attack_table")


def _config(path: Path, manifest: Path, checkpoint: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "seed": 0, "split": "train", "manifest": str(manifest),
        "models": [{"name": "tiny", "checkpoint": str(checkpoint)}],
        "attacks": [{"attack": "gaussian_noise", "eps": [8]},
                    {"attack": "pgd", "options": {"steps": 1}, "eps": [8]},
                    {"attack": "pgd", "options": {"steps": 1}, "eps": [8], "window": {"gradient": "tiles"}},
                    {"attack": "vafa3d", "options": {"steps": 1, "block": 8}, "sweep": {"q_max": [30]}}],
    }))
    return path


def _wt(results: pd.DataFrame, cell: str) -> pd.Series:
    rows = results[(results.cell == cell) & (results.metric == "dice") & (results.region == "WT")]
    return rows.set_index("case")["adversarial"]


def test_table_checks_match_raw_results_and_resume(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    script = _script()
    cfg = _config(tmp_path / "grid.yaml", synth_manifest, tiny_checkpoint)
    out, doc = tmp_path / "out", tmp_path / "t.md"
    argv = ["--config", str(cfg), "-o", str(out), "--doc", str(doc), "--steps", "1", "--quiet"]
    assert script.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    results = pd.read_csv(out / "results.csv")
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "robustness" and run["status"] == "finished"
    cells = run["cells"]
    assert list(pd.unique(results["cell"])) == [c["cell"] for c in cells]  # every cell, the matched noise last
    by_name = {(c["attack"], c["window"].get("gradient", "exact")): c["cell"] for c in cells if c["attack"] == "pgd"}
    checks = {c["check"]: c for c in report["checks"]}
    assert set(checks) == {"pgd_drop", "vafa_beats_matched_noise", "exact_at_least_tiles", "sanity_flags_clear"}

    exact, tiles = by_name[("pgd", "exact")], by_name[("pgd", "tiles")]
    e, t = _wt(results, exact), _wt(results, tiles)
    assert checks["exact_at_least_tiles"]["passed"] == bool(e.mean() <= t.mean())
    assert checks["exact_at_least_tiles"]["exact_wt"] == pytest.approx(e.mean())
    wt = results[(results.cell == exact) & (results.metric == "dice") & (results.region == "WT")]
    drop = (wt["clean"].mean() - wt["adversarial"].mean()) / wt["clean"].mean()
    assert checks["pgd_drop"]["rel_drop"] == pytest.approx(drop) and checks["pgd_drop"]["passed"] == (drop >= 0.5)

    # per-case drop against the tumour volume, read here straight from the label files
    man = json.loads(synth_manifest.read_text())
    labels = {c["id"]: synth_manifest.parent / c["label"] for c in man["cases"]}
    by_case = {r["case"]: r for r in checks["pgd_drop"]["by_case"]}
    assert set(by_case) == set(wt["case"])
    for _, row in wt.iterrows():
        img = nib.load(labels[row["case"]])
        ml = float((np.asarray(img.dataobj) > 0).sum()) * float(np.prod(img.header.get_zooms()[:3])) / 1000
        r = by_case[row["case"]]
        assert r["wt_ml"] == pytest.approx(ml) and r["adversarial"] == pytest.approx(row["adversarial"])
        if row["clean"] > 0:
            assert r["rel_drop"] == pytest.approx((row["clean"] - row["adversarial"]) / row["clean"])
        else:
            assert np.isnan(r["rel_drop"])  # no relative drop from an empty clean overlap
    scored = [r for r in by_case.values() if not np.isnan(r["rel_drop"])]
    vol = np.array([r["wt_ml"] for r in scored])
    d = np.array([r["rel_drop"] for r in scored])
    rho = checks["pgd_drop"]["spearman_rho_volume_drop"]
    if len(d) >= 3 and np.ptp(d) > 0 and np.ptp(vol) > 0:
        assert rho == pytest.approx(np.corrcoef(rankdata(vol), rankdata(d))[0, 1])
    else:
        assert rho is None
    summary = pd.read_csv(out / "summary.csv")
    pgd_wt = summary[(summary.cell == exact) & (summary.region == "WT") & (summary.metric == "dice")]
    assert pgd_wt["rel_degradation"].iloc[0] == pytest.approx(drop)
    pgd_wt = pgd_wt["rel_degradation"].iloc[0]
    assert checks["pgd_drop"]["eps_reaching_half"] == (8 if pgd_wt >= 0.5 else None)

    # the matched noise cell exists and its SSIM equals the VAFA cell's (measured independently from the rows)
    vafa = checks["vafa_beats_matched_noise"]
    sigma = vafa["noise_sigma_255"]
    noise = [c["cell"] for c in cells if c["attack"] == "gaussian_noise" and c["options"]["eps"] == sigma]
    assert len(noise) == 1 and sigma != 8 and noise[0] == vafa["noise_cell"] == cells[-1]["cell"]
    ssim = results.groupby(["cell", "case"])["ssim"].first().groupby("cell").mean()
    assert ssim[noise[0]] == pytest.approx(ssim[vafa["cell"]], abs=2e-3)
    assert vafa["passed"] == bool(_wt(results, vafa["cell"]).mean() < _wt(results, noise[0]).mean())

    text = doc.read_text()
    assert text.count("\n| ") == 2 + len(cells) + 2 + len(by_case) and "## Checks" in text
    assert "## Drop per case" in text and "attack_table.py" in text

    rows = {r["cell"]: r for r in report["rows"]}
    assert rows[exact]["seconds_per_case"] == pytest.approx(results[results.cell == exact].groupby("case")
                                                             ["seconds"].first().mean())
    assert report["computed_now"] > 0

    # a rerun computes nothing and gives the same table; so does volrob robustness on the same folder
    first = pd.read_csv(out / "summary.csv")
    assert script.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["computed_now"] == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), first)
    from volrob.cli.main import main

    assert main(["robustness", str(cfg), "-o", str(out), "--quiet"]) == 0  # the grid without the matched noise
    assert "0 unit(s) computed now" in capsys.readouterr().out


def test_bad_config_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "grid.yaml"
    bad.write_text("seed: 0\n")
    assert _script().main(["--config", str(bad), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bad) in err and "\n" not in err


def test_transfer_config_is_refused(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path / "grid.yaml", synth_manifest, tiny_checkpoint)
    out = tmp_path / "out"
    assert _script().main(["--config", str(cfg), "-o", str(out), "--set", "transfer=true", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "white-box" in err and "\n" not in err and not out.exists()


def test_drop_by_volume_on_hand_made_rows() -> None:
    cases = ["a", "b", "c", "d"]
    rows = pd.DataFrame({"cell": "x", "metric": "dice", "region": "WT", "case": cases,
                         "clean": [0.8, 0.5, 0.0, 0.9], "adversarial": [0.4, 0.4, 0.0, 0.9]})
    other = rows.assign(region="TC", adversarial=0.0)  # other regions must not count
    volumes = pd.Series({"a": 1.0, "b": 5.0, "c": 7.0, "d": 20.0})
    out = _script().drop_by_volume(pd.concat([rows, other]), "x", volumes)
    got = {r["case"]: r for r in out["by_case"]}
    assert got["a"]["rel_drop"] == pytest.approx(0.5) and got["b"]["rel_drop"] == pytest.approx(0.2)
    assert got["d"]["rel_drop"] == 0 and np.isnan(got["c"]["rel_drop"]) and got["b"]["wt_ml"] == 5.0
    # drops 0.5, 0.2, 0 at volumes 1, 5, 20: perfectly decreasing ranks (the empty case is left out)
    assert out["spearman_rho_volume_drop"] == pytest.approx(-1.0)
    two = _script().drop_by_volume(rows[rows.case.isin(["a", "b"])], "x", volumes)
    assert two["spearman_rho_volume_drop"] is None
