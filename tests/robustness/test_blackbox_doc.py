"""scripts/blackbox_doc.py on hand-made query and universal outputs: tables equal direct computations, pairing by
case id, the figure copied and linked, missing inputs exit 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from script_loader import load_script

CASES = [f"c{i}" for i in range(6)]


def _script() -> ModuleType:
    return load_script("blackbox_doc")


def _query_run(folder: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for case in CASES:
        for q, drop in ((0, 0.0), (50, 0.1), (200, 0.3)):
            for region in ("TC", "WT", "ET"):
                rows.append({"case": case, "model": "unet", "queries": q, "region": region, "metric": "dice",
                             "value": 0.8 - drop + rng.uniform(-0.05, 0.05)})
            rows.append({"case": case, "model": "unet", "queries": q, "region": "WT", "metric": "hd95",
                         "value": 99.0})
    df = pd.DataFrame(rows)
    folder.mkdir(parents=True)
    df.to_csv(folder / "queries.csv", index=False)
    (folder / "run.json").write_text(json.dumps({"split": "test", "seed": 0,
                                                 "attack_options": {"eps": 8.0, "queries": 200}}))
    (folder / "queries.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return df


def _universal_run(folder: Path) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for target, effect in (("unet", 0.2), ("unetr", 0.0)):
        for case in CASES:
            clean = 0.8 + rng.uniform(-0.05, 0.05)
            for pert, drop in (("universal", effect + rng.uniform(0, 0.05)), ("noise", rng.uniform(0, 0.01))):
                rows.append({"source": "unet", "target": target, "perturbation": pert, "case": case,
                             "region": "WT", "metric": "dice", "clean": clean, "adversarial": clean - drop})
    df = pd.DataFrame(rows)
    folder.mkdir(parents=True)
    df.sample(frac=1.0, random_state=3).to_csv(folder / "universal.csv", index=False)  # order must not matter
    (folder / "universal.json").write_text(json.dumps({"train_split": "train", "eval_split": "test", "eps": 8,
                                                       "epochs": 5, "crops_per_case": 2, "step": 1, "seed": 0,
                                                       "noise_control": "random sign"}))
    return df


def test_tables_match_direct_computation(tmp_path: Path) -> None:
    mod = _script()
    q = _query_run(tmp_path / "query")
    u = _universal_run(tmp_path / "universal")
    doc = tmp_path / "docs" / "blackbox.md"
    assert mod.main(["--query", str(tmp_path / "query"), "--universal", str(tmp_path / "universal"),
                     "--doc", str(doc), "--figures", str(tmp_path / "docs" / "fig")]) == 0
    text = doc.read_text()
    assert (tmp_path / "docs" / "fig" / "queries.png").is_file() and "](fig/queries.png)" in text
    assert "ε = 8.0/255, query budget 200 per case" in text
    wt = q[(q.region == "WT") & (q.metric == "dice")]
    for queries, g in wt.groupby("queries"):
        assert f"| {queries} | 6 | {g['value'].mean():.3f} | {g['value'].min():.3f} |" in text
    sel = u[u.region == "WT"]
    for target in ("unet", "unetr"):
        t = sel[sel.target == target]
        uni = t[t.perturbation == "universal"].set_index("case").loc[CASES]
        noise = t[t.perturbation == "noise"].set_index("case").loc[CASES]
        p = stats.wilcoxon(noise["adversarial"], uni["adversarial"], alternative="greater").pvalue
        assert (f"| {target} | 6 | {uni['clean'].mean():.3f} | {uni['adversarial'].mean():.3f} | "
                f"{noise['adversarial'].mean():.3f} | {p:.3g} |") in text
    table = mod.universal_table(u)
    assert table.set_index("target").loc["unet", "p_universal_lower"] < 0.05
    assert table.set_index("target").loc["unetr", "p_universal_lower"] > 0.05


def test_missing_run_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _query_run(tmp_path / "query")
    doc = tmp_path / "doc.md"
    code = _script().main(["--query", str(tmp_path / "query"), "--universal", str(tmp_path / "nope"),
                           "--doc", str(doc), "--figures", str(tmp_path / "fig")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "nope" in err and "universal.csv" in err
    assert not doc.exists()
