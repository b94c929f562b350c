"""scripts/vafa_protocol.py: on the tiny fixtures the table agrees with the engine's raw rows and unit files, the
recorded protocol options name each cell and a rerun resumes; the aggregation over several cases on hand-made
tables; bad grids are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pandas as pd
import pytest
import yaml
from script_loader import load_script


def _script() -> ModuleType:
    return load_script("vafa_protocol")


def _config(path: Path, manifest: Path, checkpoint: Path, attacks: list[dict] | None = None) -> Path:
    cheap = {"steps": 1, "block": 8}
    path.write_text(yaml.safe_dump({
        "seed": 0, "split": "train", "max_cases": 1, "manifest": str(manifest),
        "models": [{"name": "tiny", "checkpoint": str(checkpoint)}],
        "attacks": attacks or [
            {"attack": "vafa3d", "options": cheap},
            {"attack": "vafa3d", "options": {**cheap, "ssim": "per_block", "output_rescale": "per_slice_minmax"}},
        ],
    }))
    return path


def test_table_matches_raw_results_and_resumes(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    script = _script()
    cfg = _config(tmp_path / "grid.yaml", synth_manifest, tiny_checkpoint)
    out, doc = tmp_path / "out", tmp_path / "vafa.md"
    argv = ["--config", str(cfg), "-o", str(out), "--doc", str(doc), "--quiet"]
    assert script.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["rows"]
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "robustness" and [r["cell"] for r in rows] == [c["cell"] for c in run["cells"]]
    assert [r["protocol"] for r in rows] == ["volrob default", "published protocol"]
    assert [r["ssim_window"] for r in rows] == [7, 3] and [r["rescale_in_loop"] for r in rows] == [None, True]

    results = pd.read_csv(out / "results.csv")
    for r in rows:
        mine = results[results.cell == r["cell"]]
        cases = sorted(set(mine["case"]))
        assert len(cases) == 1
        wt = mine[(mine.metric == "dice") & (mine.region == "WT")]
        assert r["WT_dice"] == pytest.approx(wt["adversarial"].mean())
        assert r["WT_rel_drop"] == pytest.approx((wt["clean"].mean() - wt["adversarial"].mean()) / wt["clean"].mean())
        linf = mine.groupby("case")["linf_255"].first()
        assert r["linf_255_max"] == pytest.approx(linf.max()) and r["linf_255_mean"] == pytest.approx(linf.mean())
        assert r["ssim_volume"] == pytest.approx(mine.groupby("case")["ssim"].first().mean())
        units = [json.loads((out / "units" / r["cell"] / f"{c}.json").read_text()) for c in cases]
        per_block = [v for u in units for v in u["record"]["ssim_per_block"]]
        assert r["ssim_per_block"] == pytest.approx(sum(per_block) / len(per_block))
        # the unit's own perturbation stats are the engine's, measured on the returned (rescaled) input
        assert [u["perturbation"]["linf_255"] for u in units] == pytest.approx(list(linf))
        assert all(u["record"]["params"]["output_rescale"] == r["output_rescale"] for u in units)

    text = doc.read_text()
    assert text.count("\n| ") == 2 + len(rows) + 7 and "vafa_protocol.py" in text and "synthetic" in text
    table = text.split("| --- | --- | --- | ---: |")[1].split("\n\n")[0].strip().splitlines()[1:]
    assert [line.split(" | ")[0].lstrip("| ") for line in table] == [r["protocol"] for r in rows]
    assert "## Readings" in text and text.count("\n- ") >= 3 + len(rows) - 1

    assert script.main(argv) == 0  # a rerun computes nothing and gives the same rows
    again = json.loads(capsys.readouterr().out)
    assert again["computed_now"] == 0
    strip = [{k: v for k, v in r.items() if k != "seconds_per_case"} for r in rows]
    assert [{k: v for k, v in r.items() if k != "seconds_per_case"} for r in again["rows"]] == strip


def test_non_vafa_grid_is_one_line_exit_2(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path / "grid.yaml", synth_manifest, tiny_checkpoint, [{"attack": "pgd", "eps": [8]}])
    out = tmp_path / "out"
    assert _script().main(["--config", str(cfg), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "vafa3d" in err and "\n" not in err and not out.exists()


def test_protocol_names_and_readings() -> None:
    script = _script()
    base = {"steps": 5, "q_max": 20.0, "block": [32, 32, 32], "ssim_window": 3, "rescale_axis": 4}
    named = {(s, o, loop): script.protocol_of({**base, "ssim": s, "output_rescale": o, "rescale_in_loop": loop})
             for s in ("volume", "per_block") for o in ("none", "per_slice_minmax") for loop in (True, False)}
    assert named[("volume", "none", True)]["protocol"] == "volrob default"
    assert named[("volume", "none", False)]["rescale_in_loop"] is None  # meaningless without a rescale
    assert named[("per_block", "per_slice_minmax", True)]["protocol"] == "published protocol"
    assert named[("per_block", "per_slice_minmax", False)]["protocol"] == "per-block SSIM + rescale of the output only"
    assert named[("per_block", "none", True)]["protocol"] == "per-block SSIM"
    rows = [{"protocol": p, "WT_dice": d, "WT_rel_drop": 1 - d / 0.8, "linf_255_max": m, "ssim_volume": s}
            for p, d, m, s in (("volrob default", 0.7, 40.0, 0.99), ("published protocol", 0.1, 255.0, 0.5))]
    (line,) = script.readings(rows)
    assert "0.100 against 0.700" in line and "255.0/255 against 40.0/255" in line and "87.5% against 12.5%" in line
    assert script.readings(rows[1:]) == []


def test_table_rows_on_hand_made_tables() -> None:
    """Three cases of two cells: Dice from the summary, L∞ largest and mean over cases, SSIMs averaged per case."""
    script = _script()
    cases = ["c0", "c1", "c2"]
    linf = {"a": [10.0, 30.0, 20.0], "b": [200.0, 255.0, 100.0]}
    vol = {"a": [0.99, 0.98, 0.97], "b": [0.5, 0.6, 0.7]}
    results = pd.DataFrame([{"cell": c, "case": k, "region": reg, "metric": m, "linf_255": linf[c][i],
                             "ssim": vol[c][i], "seconds": 2.0 + i}
                            for c in ("a", "b") for i, k in enumerate(cases) for reg in ("TC", "WT", "ET")
                            for m in ("dice", "hd95")])
    summary = pd.DataFrame([{"cell": c, "region": reg, "metric": "dice", "adversarial_mean": adv,
                             "clean_mean": 0.8, "rel_degradation": 1 - adv / 0.8}
                            for c, adv in (("a", 0.7), ("b", 0.2)) for reg in ("TC", "WT", "ET")])
    params = {"steps": 5, "q_max": 20.0, "block": [32, 32, 32], "rescale_axis": 4}
    records = {f"{c}/{k}": {"params": {**params, **opts}, "ssim_per_block": [pb + 0.01 * i]}
               for c, opts, pb in (("a", {"ssim": "volume", "ssim_window": 7, "output_rescale": "none",
                                          "rescale_in_loop": True}, 0.9),
                                   ("b", {"ssim": "per_block", "ssim_window": 3, "output_rescale": "per_slice_minmax",
                                          "rescale_in_loop": True}, 0.4))
               for i, k in enumerate(cases)}
    cells = [SimpleNamespace(id="a", attack="vafa3d"), SimpleNamespace(id="b", attack="vafa3d")]
    a, b = script.table_rows(results, summary, records, cells)
    assert (a["protocol"], b["protocol"]) == ("volrob default", "published protocol")
    assert (a["linf_255_max"], a["linf_255_mean"]) == (30.0, pytest.approx(20.0))
    assert (b["linf_255_max"], b["linf_255_mean"]) == (255.0, pytest.approx(185.0))
    assert a["ssim_volume"] == pytest.approx(0.98) and b["ssim_volume"] == pytest.approx(0.6)
    assert a["ssim_per_block"] == pytest.approx(0.91) and b["ssim_per_block"] == pytest.approx(0.41)
    assert b["WT_dice"] == 0.2 and b["WT_rel_drop"] == pytest.approx(0.75) and a["seconds_per_case"] == 3.0
    with pytest.raises(script.DataError, match="records"):
        script.table_rows(results, summary, {}, cells)
