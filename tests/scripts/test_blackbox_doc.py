"""scripts/blackbox_doc.py: tables equal direct computations on hand-made engine tables (pairing by case id, row
order irrelevant), the figure copied and linked, real ``volrob query`` / ``volrob universal`` runs render, and a
missing or foreign run folder exits 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from script_loader import load_script

from volrob.engine.tables import QUERY_COLUMNS, RESULT_COLUMNS

CASES = [f"c{i}" for i in range(6)]


def _script() -> ModuleType:
    return load_script("blackbox_doc")


def _run_json(folder: Path, command: str, **extra: object) -> None:
    (folder / "run.json").write_text(json.dumps({"command": command, "status": "finished",
                                                 "config": {"split": "test", "seed": 0}, **extra}))


def _query_run(folder: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for case in CASES:
        clean = {r: 0.8 + rng.uniform(-0.05, 0.05) for r in ("TC", "WT", "ET")}
        for q, drop in ((0, 0.0), (50, 0.1), (200, 0.3)):
            for region in ("TC", "WT", "ET"):
                rows.append({"case": case, "model": "unet", "source": "unet", "attack": "square3d", "queries": q,
                             "selected_queries": q, "region": region, "metric": "dice", "clean": clean[region],
                             "adversarial": clean[region] - drop * rng.uniform(0.5, 1.0)})
            rows.append({"case": case, "model": "unet", "source": "unet", "attack": "square3d", "queries": q,
                         "selected_queries": q, "region": "WT", "metric": "hd95", "clean": 9.0, "adversarial": 99.0})
    df = pd.DataFrame(rows).reindex(columns=QUERY_COLUMNS)
    folder.mkdir(parents=True)
    df.sample(frac=1.0, random_state=2).to_csv(folder / "queries.csv", index=False)
    _run_json(folder, "query", cells=[{"cell": "unet__square3d__x", "attack": "square3d",
                                       "options": {"eps": 8.0, "queries": 200, "checkpoints": [50, 200]}}])
    (folder / "queries.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return df


def _universal_run(folder: Path) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for model, effect in (("unet", 0.2), ("unetr", 0.0)):
        for case in CASES:
            clean = 0.8 + rng.uniform(-0.05, 0.05)
            for attack, drop in (("universal", effect + rng.uniform(0, 0.05)), ("sign_noise", rng.uniform(0, 0.01))):
                for region in ("WT", "TC"):
                    rows.append({"source": "unet", "model": model, "attack": attack, "case": case, "region": region,
                                 "metric": "dice", "clean": clean, "adversarial": clean - drop - (region == "TC")})
    df = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)
    (folder / "universal").mkdir(parents=True)
    df.sample(frac=1.0, random_state=3).to_csv(folder / "results.csv", index=False)  # order must not matter
    _run_json(folder, "universal")
    (folder / "universal" / "record.json").write_text(json.dumps({"params": {
        "source": "unet", "train_split": "train", "eps": 8, "epochs": 5, "crops_per_case": 2, "step": 1, "seed": 0}}))
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
    assert "ε = 8.0/255, query budget 200 per case" in text and "split `test`" in text
    wt = q[(q.region == "WT") & (q.metric == "dice")]
    for queries, g in wt.groupby("queries"):
        assert (f"| {queries} | 6 | {g['adversarial'].mean():.3f} | {g['adversarial'].min():.3f} | "
                f"{g['adversarial'].max():.3f} |") in text
    assert "Learned on `train` crops of the source `unet` (ε = 8.0/255, 5 epochs, 2 crops per case" in text
    sel = u[(u.region == "WT") & (u.metric == "dice")]
    for model in ("unet", "unetr"):
        t = sel[sel.model == model]
        uni = t[t.attack == "universal"].set_index("case").loc[CASES]
        noise = t[t.attack == "sign_noise"].set_index("case").loc[CASES]
        p = stats.wilcoxon(noise["adversarial"], uni["adversarial"], alternative="greater").pvalue
        assert (f"| {model} | 6 | {uni['clean'].mean():.3f} | {uni['adversarial'].mean():.3f} | "
                f"{noise['adversarial'].mean():.3f} | {p:.3g} |") in text
    table = mod.universal_table(u).set_index("model")
    assert table.loc["unet", "p_universal_lower"] < 0.05 < table.loc["unetr", "p_universal_lower"]


@pytest.fixture(scope="module")
def real_runs(tiny_checkpoint: Path, second_checkpoint: Path, synth_manifest: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real ``volrob query`` run and a real ``volrob universal`` run on the tiny fixtures (small budgets)."""
    from volrob.cli.main import main

    root = tmp_path_factory.mktemp("blackbox_runs")
    common = ["--manifest", str(synth_manifest), "--device", "cpu", "--threads", "1", "--quiet"]
    assert main(["query", "--checkpoint", str(tiny_checkpoint), "--name", "tiny", "--eps", "8", "--queries", "4",
                 "--checkpoints", "2", "-o", str(root / "query"), *common]) == 0
    assert main(["universal", "--source", str(tiny_checkpoint), "--source-name", "tiny", "--target",
                 f"other={second_checkpoint}", "--epochs", "1", "--crops-per-case", "1", "--eps", "8",
                 "-o", str(root / "universal"), *common]) == 0
    return root / "query", root / "universal"


def test_real_runs_render(real_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query, universal = real_runs
    doc = tmp_path / "doc.md"
    capsys.readouterr()
    assert _script().main(["--query", str(query), "--universal", str(universal), "--doc", str(doc),
                           "--figures", str(tmp_path / "fig")]) == 0
    assert json.loads(capsys.readouterr().out)["doc"] == str(doc)
    text = doc.read_text()
    q = pd.read_csv(query / "queries.csv")
    wt = q[(q.region == "WT") & (q.metric == "dice")]
    assert sorted(wt["queries"].unique()) == [0, 2, 4]
    for queries, g in wt.groupby("queries"):
        assert f"| {queries} | {g['case'].nunique()} | {g['adversarial'].mean():.3f} |" in text
    assert "Model `tiny`" in text and "query budget 4 per case" in text
    results = pd.read_csv(universal / "results.csv")
    sel = results[(results.region == "WT") & (results.metric == "dice")]
    for model in ("tiny", "other"):
        mine = sel[sel.model == model]
        uni, noise = mine[mine.attack == "universal"], mine[mine.attack == "sign_noise"]
        assert (f"| {model} | {len(uni)} | {uni['clean'].mean():.3f} | {uni['adversarial'].mean():.3f} | "
                f"{noise['adversarial'].mean():.3f} |") in text
    assert "source `tiny` (ε = 8.0/255, 1 epochs, 1 crops per case" in text


def test_missing_run_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _query_run(tmp_path / "query")
    doc = tmp_path / "doc.md"
    code = _script().main(["--query", str(tmp_path / "query"), "--universal", str(tmp_path / "nope"),
                           "--doc", str(doc), "--figures", str(tmp_path / "fig")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "nope" in err and "run.json" in err
    assert not doc.exists()


def test_foreign_run_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _universal_run(tmp_path / "universal")
    _query_run(tmp_path / "query")
    doc = tmp_path / "doc.md"
    code = _script().main(["--query", str(tmp_path / "universal"), "--universal", str(tmp_path / "universal"),
                           "--doc", str(doc), "--figures", str(tmp_path / "fig")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "not a finished volrob query run" in err
    (tmp_path / "universal" / "results.csv").unlink()
    code = _script().main(["--query", str(tmp_path / "query"), "--universal", str(tmp_path / "universal"),
                           "--doc", str(doc), "--figures", str(tmp_path / "fig")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "no results.csv here" in err
    assert not doc.exists()
