"""scripts/transfer_doc.py on a real (tiny) ``volrob transfer`` run: the matrices in the document are the run's
``matrices.csv``, heatmaps and spectra are copied and linked, the band table reads ``bands_summary.csv``; a folder
that is not a finished transfer run exits 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import yaml
from script_loader import load_script

from volrob.cli.main import main


def _script() -> ModuleType:
    return load_script("transfer_doc")


@pytest.fixture(scope="module")
def transfer_run(tiny_checkpoint: Path, second_checkpoint: Path, synth_manifest: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("transfer_doc")
    cfg = root / "transfer.yaml"
    cfg.write_text(yaml.safe_dump({
        "seed": 0, "split": "test", "manifest": str(synth_manifest), "transfer": True,
        "models": [{"name": "tiny", "checkpoint": str(tiny_checkpoint)},
                   {"name": "other", "checkpoint": str(second_checkpoint)}],
        "attacks": [{"attack": "pgd", "options": {"steps": 1}, "eps": [4, 8]}],
        "bands": {"edges": [0.0, 0.15, 1.0]}, "sanity": {"tolerance": 0.02}}))
    assert main(["transfer", str(cfg), "-o", str(root / "run"), "--device", "cpu", "--threads", "1", "--quiet"]) == 0
    return root / "run"


def test_document_reads_the_run(transfer_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, figs = tmp_path / "docs" / "transfer.md", tmp_path / "docs" / "fig"
    capsys.readouterr()
    assert _script().main(["--run", str(transfer_run), "--doc", str(doc), "--figures", str(figs)]) == 0
    written = json.loads(capsys.readouterr().out)
    assert {Path(p).name for p in written["figures"]} == {"pgd_eps_4.png", "pgd_eps_8.png", "spectrum.png"}
    text = doc.read_text()
    assert "](fig/pgd_eps_4.png)" in text and "](fig/spectrum.png)" in text
    matrices = pd.read_csv(transfer_run / "matrices.csv")
    for (budget, source, model), row in matrices.set_index(["budget", "source", "model"]).iterrows():
        section = text.split(f"## pgd eps={budget:g}\n", 1)[1].split("\n## ", 1)[0]
        drop = section.split("mean Dice drop:", 1)[1].split("attack success rate:", 1)[0]
        line = next(x for x in drop.splitlines() if x.startswith(f"| {source} |"))
        value = f"{row['dice_drop']:.3f}"
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1 + ["tiny", "other"].index(model)] == (f"**{value}**" if source == model else value)
    results = pd.read_csv(transfer_run / "results.csv")
    for model, sha in results.groupby("model")["model_sha256"].first().items():
        assert f"`{model}` {sha[:12]}" in text
    clean = matrices.groupby("model")["clean_dice"].first()
    assert f"Clean mean WT Dice: tiny {clean['tiny']:.3f}, other {clean['other']:.3f}." in text
    flags = {f["name"]: f for f in json.loads((transfer_run / "sanity.json").read_text())}
    state = "**RAISED**" if flags["blackbox_stronger_than_whitebox"]["raised"] else "clear"
    assert f"- black-box stronger than white-box: {state}" in text
    bands = pd.read_csv(transfer_run / "bands_summary.csv")
    assert text.count("| pgd eps=") == len(bands[["budget", "band"]].drop_duplicates())
    assert "(1 case)" in text and "Sources: tiny, other; targets: tiny, other." in text


def test_spectra_pool_the_stored_perturbations(transfer_run: Path) -> None:
    script = _script()
    run = json.loads((transfer_run / "run.json").read_text())
    table = script.spectra(transfer_run, run["cells"])
    assert set(table["name"]) == {"pgd eps=4", "pgd eps=8"}
    stored = sorted((transfer_run / "units").glob("*/*.npz"))
    assert len(stored) == 2 * 2 * len(run["cases"])  # two sources x two budgets x cases
    bins = table["bin_lo"].nunique()
    assert len(table) == len(stored) * bins
    sums = table.groupby(["name", table.index // bins])["energy_fraction"].sum()
    assert sums.to_numpy() == pytest.approx(1.0)  # each perturbation's energy shares add up to one


def test_not_a_transfer_run_is_one_line_exit_2(transfer_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "doc.md"
    assert _script().main(["--run", str(tmp_path / "nope"), "--doc", str(doc), "--figures", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope" in err and "\n" not in err
    other = tmp_path / "other"
    other.mkdir()
    for name in ("matrices.csv", "results.csv", "sanity.json"):
        (other / name).write_bytes((transfer_run / name).read_bytes())
    record = json.loads((transfer_run / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**record, "command": "robustness"}))
    assert _script().main(["--run", str(other), "--doc", str(doc), "--figures", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a finished transfer run" in err and "'robustness'" in err and "\n" not in err
    assert not doc.exists()
