"""``volrob report`` and the report stage of ``volrob run``: a page made from the study's own tables, with a
section per stage that ran (and none for a stage that did not), every figure embedded and written as PNG beside
it, every table as CSV equal to a direct computation, the same page for the same results, and clear errors."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from volrob.analysis.spectrum import spectrum_table
from volrob.cli.main import main
from volrob.evaluation.attack_effect import attack_effects
from volrob.report.budget_plot import budget_table
from volrob.report.build import build_report
from volrob.report.results_dir import load_results

ROOT = Path(__file__).resolve().parents[2]
ALL_SECTIONS = ["overview", "training", "clean", "whitebox", "transfer", "defences", "worst"]


def _stage(study: Path, name: str) -> Path:
    return study / json.loads((study / "study.json").read_text())["stages"][name]


def test_study_report_has_every_stage(small_study_dir: Path) -> None:
    page = small_study_dir / "report.html"
    text = page.read_text(encoding="utf-8")
    ids = re.findall(r'<section id="([a-z]+)">', text)
    assert ids == ALL_SECTIONS
    assert "Synthetic phantoms" in text  # the banner, and every figure title says so
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', text)
    files = small_study_dir / "report_files"
    pngs = sorted(files.glob("*.png"))
    assert len(images) == len(pngs) >= 10
    for data, alt in images:
        assert base64.b64decode(data).startswith(b"\x89PNG") and alt
    assert all(alt.startswith("[synthetic data]") for _, alt in images)
    shown = set(re.findall(r"report_files/([^)<]+\.(?:png|csv))\)", text))
    assert shown == {p.name for p in files.iterdir()}  # every file beside the page is named on it, and only those
    for needle in ("Wilcoxon", "effect size", "transfer ratio", "schedule-matched control", "unet_ft",
                   "The exact configuration", "Sanity checks", "torch"):
        assert needle in text, needle
    assert str(small_study_dir.parent) not in text and str(ROOT) not in text  # no machine's folders on the page


def test_tables_beside_the_page_equal_direct_computations(small_study_dir: Path) -> None:
    files = small_study_dir / "report_files"
    grid = pd.read_csv(_stage(small_study_dir, "grid") / "results.csv")
    pd.testing.assert_frame_equal(pd.read_csv(files / "whitebox_paired_statistics.csv"),
                                  attack_effects(grid, region="WT", seed=0), check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_csv(files / "whitebox_dice_vs_budget.csv"),
                                  budget_table(grid, region="WT", seed=0), check_dtype=False)
    matrices = pd.read_csv(_stage(small_study_dir, "transfer") / "matrices.csv")
    pd.testing.assert_frame_equal(pd.read_csv(files / "transfer_matrices.csv"), matrices, check_dtype=False)
    comparison = pd.read_csv(_stage(small_study_dir, "compare") / "comparison.csv")
    pd.testing.assert_frame_equal(pd.read_csv(files / "defences.csv"), comparison, check_dtype=False)
    control = pd.read_csv(files / "defences_vs_control.csv")
    assert set(control["model"]) == {"unet_at"} and set(control["reference"]) == {"unet_ft"}
    spectra = pd.read_csv(files / "perturbation_spectra.csv")  # the mean spectrum of each cell's stored deltas
    cells = sorted(p for p in (_stage(small_study_dir, "transfer") / "units").iterdir() if p.is_dir())
    assert len(cells) == 2 and set(spectra["cases"]) == {2}
    for cell in cells:
        frames = []
        for path in sorted(cell.glob("*.npz")):
            with np.load(path) as data:
                delta = torch.from_numpy(np.array(data["delta"], dtype=np.float64))
            frames.append(spectrum_table({"x": delta.reshape(1, *delta.shape[-4:])})["energy_fraction"].to_numpy())
        source = cell.name.split("__")[0]
        mine = spectra[spectra["name"].str.endswith(f" on {source}")]["energy_fraction"].to_numpy()
        assert np.allclose(mine, np.mean(frames, axis=0))


def test_same_results_same_page(small_study_dir: Path, tmp_path: Path) -> None:
    a = build_report(small_study_dir, tmp_path / "a.html")
    b = build_report(small_study_dir, tmp_path / "b.html")
    assert a.page.read_bytes().replace(b"b_files", b"a_files") == b.page.read_bytes().replace(b"b_files", b"a_files")
    assert a.page.read_bytes() != b"" and a.sections == ALL_SECTIONS


def test_markdown_page(small_study_dir: Path, tmp_path: Path) -> None:
    md = tmp_path / "docs" / "study.md"
    report = build_report(small_study_dir, md)
    text = md.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all((md.parent / link).is_file() for link in links)
    assert all(link.startswith("study_files/") for link in links)
    assert report.page == md and "## White-box robustness" in text and "data:image" not in text


def test_sections_of_stages_that_did_not_run_are_left_out(small_study_dir: Path, tmp_path: Path) -> None:
    # a run folder alone: its models' checkpoints lie in `volrob train` folders, whose logs give the training section
    evaluate = tmp_path / "evaluate"
    shutil.copytree(_stage(small_study_dir, "evaluate"), evaluate)
    report = build_report(evaluate, tmp_path / "e.html")
    assert report.sections == ["overview", "training", "clean"]
    assert {t.name for t in load_results(evaluate).trained} == {"unet", "given"}
    grid = tmp_path / "grid"
    shutil.copytree(_stage(small_study_dir, "grid"), grid)
    assert build_report(grid, tmp_path / "g.html").sections == ["overview", "training", "whitebox", "worst"]
    transfer = tmp_path / "transfer"
    shutil.copytree(_stage(small_study_dir, "transfer"), transfer)
    record = json.loads((transfer / "run.json").read_text())
    for model in record["models"].values():  # checkpoints without a training folder beside them: no training section
        model["origin"]["checkpoint"] = str(tmp_path / "elsewhere" / "best.pt")
    (transfer / "run.json").write_text(json.dumps(record))
    assert build_report(transfer, tmp_path / "t.html").sections == ["overview", "transfer", "worst"]
    assert load_results(transfer).synthetic  # the manifest says so, without the study


def test_command_line(small_study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(small_study_dir), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"report: {out} (7 sections") and (tmp_path / "r_files").is_dir()


@pytest.mark.parametrize(("args", "message"), [
    (["{tmp}/nowhere", "-o", "{tmp}/r.html"], "nowhere: is not a folder"),
    (["{tmp}/empty", "-o", "{tmp}/r.html"], "holds neither study.json"),
    (["{study}", "-o", "{tmp}/r.pdf"], "-o/--out: the page must end in .html or .md"),
    (["{study}", "-o", "{tmp}/folder.html"], "folder.html' is a folder"),
])
def test_bad_input(small_study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                   message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "folder.html").mkdir()
    assert main(["report", *[a.format(tmp=tmp_path, study=small_study_dir) for a in args]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unfinished_run_and_failed_report_keep_what_was_written(small_study_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "grid"
    shutil.copytree(_stage(small_study_dir, "grid"), grid)
    out = tmp_path / "r.html"
    build_report(grid, out)
    before = {p.name: p.read_bytes() for p in [out, *sorted((tmp_path / "r_files").iterdir())]}
    record = json.loads((grid / "run.json").read_text())
    (grid / "run.json").write_text(json.dumps({**record, "status": "running"}))
    assert main(["report", str(grid), "-o", str(out)]) == 2
    assert "run.json: this run has not finished" in capsys.readouterr().err
    (grid / "run.json").write_text(json.dumps(record))
    (grid / "results.csv").write_text("not,a\ntable")  # a table without its columns: the build fails midway
    assert main(["report", str(grid), "-o", str(out)]) == 2
    assert "results.csv: is not a volrob results table: it lacks column(s)" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in [out, *sorted((tmp_path / "r_files").iterdir())]}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
