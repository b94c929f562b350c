"""``volrob transfer``: each perturbation is crafted once per (source, cell, case) and scored on every target;
provenance and the targets' own clean scores; a rerun crafts nothing and an interrupted run resumes to the same
table; band analysis; ensembles as sources; a target added later is scored from the stored perturbation."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from volrob.cli.main import main
from volrob.engine.cases import CaseSource
from volrob.engine.cells import Cell
from volrob.engine.scoring import score_on_source
from volrob.engine.seeds import case_seed
from volrob.engine.tables import BAND_COLUMNS, RESULT_COLUMNS, TIME_COLUMNS
from volrob.evaluation.metric_set import resolve_metric_set
from volrob.evaluation.transfer_matrix import MATRIX_COLUMNS
from volrob.sources import ModelSource

RUN_METRICS = resolve_metric_set("brats2021")  # the synthetic data's default: dice, hd95_brats, nsd

ATTACKS = [{"attack": "fgsm", "eps": [8]}, {"attack": "gaussian_noise", "eps": [8]}]


class Interrupted(Exception):
    """Raised by the counter to stop a run in the middle of a unit."""


@dataclass
class Crafts:
    """Every attack run: (cell, case seed); ``stop_at`` raises on that run (1-based) before it crafts."""

    calls: list[tuple[str, int]] = field(default_factory=list)
    stop_at: int | None = None


def count_crafts(mp: pytest.MonkeyPatch, crafts: Crafts) -> None:
    create = Cell.create_attack

    def create_attack(cell: Cell, seed: int) -> Any:
        atk = create(cell, seed)
        run = atk.run

        def counted(*args: Any, **kwargs: Any) -> Any:
            if crafts.stop_at is not None and len(crafts.calls) + 1 == crafts.stop_at:
                raise Interrupted
            crafts.calls.append((cell.id, seed))
            return run(*args, **kwargs)

        atk.run = counted
        return atk

    mp.setattr(Cell, "create_attack", create_attack)


def _config(path: Path, manifest: Path, first: Path, second: Path, **extra: Any) -> Path:
    raw = {"seed": 0, "split": "train", "max_cases": 2, "manifest": str(manifest),
           "models": [{"name": "m1", "checkpoint": str(first)}, {"name": "m2", "checkpoint": str(second)}],
           "attacks": ATTACKS, **extra}
    path.write_text(yaml.safe_dump(raw))
    return path


def _transfer(config: Path, out: Path, *args: str) -> int:
    return main(["transfer", str(config), "-o", str(out), "--threads", "1", "--quiet", *args])


def _results(out: Path, name: str = "results.csv") -> pd.DataFrame:
    return pd.read_csv(out / name).drop(columns=list(TIME_COLUMNS), errors="ignore")


@dataclass
class Matrix:
    config: Path
    out: Path
    crafts: Crafts
    text: str


@pytest.fixture(scope="module")
def matrix(tiny_checkpoint: Path, second_checkpoint: Path, synth_manifest: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    root = tmp_path_factory.mktemp("transfer")
    config = _config(root / "t.yaml", synth_manifest, tiny_checkpoint, second_checkpoint)
    crafts, threads = Crafts(), torch.get_num_threads()
    text = io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(text):
            count_crafts(mp, crafts)
            assert _transfer(config, root / "out") == 0
    finally:
        torch.set_num_threads(threads)
    yield Matrix(config, root / "out", crafts, text.getvalue())


def test_each_perturbation_crafted_once_and_scored_on_every_target(matrix: Matrix) -> None:
    rows = pd.read_csv(matrix.out / "results.csv")
    cases = list(dict.fromkeys(rows["case"]))
    assert len(cases) == 2
    expected = 2 * 2 * len(cases)  # sources x cells x cases
    assert len(matrix.crafts.calls) == expected == len(set(matrix.crafts.calls))
    seeds = {case_seed(0, c) for c in cases}
    assert {seed for _, seed in matrix.crafts.calls} == seeds
    assert list(rows.columns) == RESULT_COLUMNS
    assert len(rows) == expected * 2 * 3 * 3  # x targets x regions x metrics
    assert not rows.duplicated(["cell", "model", "case", "region", "metric"]).any()
    assert (rows["white_box"] == (rows["source"] == rows["model"])).all()
    assert rows[["params", "seed", "source_sha256", "model_sha256"]].notna().all().all()
    shas = rows.groupby("model")["model_sha256"].unique()
    assert all(len(s) == 1 for s in shas) and shas["m1"][0] != shas["m2"][0]
    assert (rows["source_sha256"] == rows["source"].map(lambda s: shas[s][0])).all()
    assert rows["linf_255"].max() <= 8 + 1e-3
    # the same crafted perturbation reaches both targets: identical perturbation statistics per (cell, case)
    assert (rows.groupby(["cell", "case"])[["linf_255", "l2_255", "ssim", "psnr"]].nunique() == 1).all().all()
    assert (rows.groupby(["cell", "case"])["model"].nunique() == 2).all()


def test_the_clean_column_is_the_targets_own_clean_score(matrix: Matrix, second_checkpoint: Path,
                                                         synth_manifest: Path, one_thread: None) -> None:
    rows = pd.read_csv(matrix.out / "results.csv")
    assert (rows.groupby(["model", "case", "region", "metric"])["clean"].nunique() == 1).all()
    for (model, case), g in rows.groupby(["model", "case"]):
        unit = json.loads((matrix.out / "clean" / model / f"{case}.json").read_text())
        clean = {(r["region"], r["metric"]): r["value"] for r in unit["rows"]}
        assert all(r.clean == clean[(r.region, r.metric)] for r in g.itertuples())
    # independent oracle on m2, first case: its clean score and the m1-crafted FGSM perturbation's score
    m2 = ModelSource.from_checkpoint(str(second_checkpoint))
    case = rows["case"].iloc[0]
    p = CaseSource(synth_manifest, "train", m2.modalities).prepare(case, m2.preprocessing)
    cpu = torch.device("cpu")
    want = {(r["region"], r["metric"]): r["value"]
            for r in score_on_source(m2.predictor, p.x, p.pre, p.gt, p.data.spacing, cpu, metric_set=RUN_METRICS)}
    cell = next(c for c in rows["cell"].unique() if c.startswith("m1__fgsm"))
    with np.load(matrix.out / "units" / cell / f"{case}.npz") as z:
        delta = torch.from_numpy(np.array(z["delta"]))
    adv = {(r["region"], r["metric"]): r["value"] for r in score_on_source(
        m2.predictor, (p.x + delta).clamp(0, 1), p.pre, p.gt, p.data.spacing, cpu, metric_set=RUN_METRICS)}
    got = rows[(rows.model == "m2") & (rows.case == case) & (rows.cell == cell)]
    for r in got.itertuples():
        assert r.clean == pytest.approx(want[(r.region, r.metric)], abs=1e-9)
        assert r.adversarial == pytest.approx(adv[(r.region, r.metric)], abs=1e-9)


def test_outputs_and_the_command_line(matrix: Matrix) -> None:
    matrices = pd.read_csv(matrix.out / "matrices.csv")
    assert list(matrices.columns) == MATRIX_COLUMNS and len(matrices) == 2 * 2 * 2  # cells x sources x targets
    assert set(matrices["model"]) == {"m1", "m2"} and (matrices["n"] == 2).all()
    assert sorted(p.name for p in (matrix.out / "heatmaps").iterdir()) == ["fgsm_eps_8.png",
                                                                          "gaussian_noise_eps_8.png"]
    sanity = json.loads((matrix.out / "sanity.json").read_text())
    assert sanity[-1]["name"] == "blackbox_stronger_than_whitebox" and sanity[-1]["applicable"]
    assert "4 cell(s) x 2 case(s), 12 unit(s) computed now" in matrix.text  # 8 attack units + 4 clean units
    assert "rows: source, columns: scored model" in matrix.text
    assert not (matrix.out / "bands.csv").exists()


@pytest.mark.usefixtures("one_thread")
def test_rerun_crafts_nothing_and_an_interrupted_run_resumes(matrix: Matrix, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    again = tmp_path / "again"
    shutil.copytree(matrix.out, again)
    crafts = Crafts()
    count_crafts(monkeypatch, crafts)
    assert _transfer(matrix.config, again) == 0
    assert crafts.calls == []
    pd.testing.assert_frame_equal(_results(again), _results(matrix.out))
    crafts.stop_at = 4  # three units done, the fourth interrupted while crafting
    part = tmp_path / "part"
    with pytest.raises(Interrupted):
        _transfer(matrix.config, part)
    done = list(crafts.calls)
    assert len(done) == 3 and len(list((part / "units").rglob("*.json"))) == 3
    crafts.stop_at, crafts.calls = None, []
    assert _transfer(matrix.config, part) == 0
    assert len(crafts.calls) == len(matrix.crafts.calls) - 3 and set(crafts.calls).isdisjoint(done)
    pd.testing.assert_frame_equal(_results(part), _results(matrix.out))


@pytest.mark.usefixtures("one_thread")
def test_ensemble_source_bands_and_a_target_added_later(tiny_checkpoint: Path, second_checkpoint: Path,
                                                        synth_manifest: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    crafts = Crafts()
    count_crafts(monkeypatch, crafts)
    extra = {"max_cases": 1, "sources": ["ens"], "bands": {"edges": [0.0, 0.2, 1.0]},
             "attacks": [{"attack": "fgsm", "eps": [8]}]}
    models = [{"name": "m1", "checkpoint": str(tiny_checkpoint)}, {"name": "m2", "checkpoint": str(second_checkpoint)},
              {"name": "ens", "members": ["m1", "m2"]}]
    out = tmp_path / "out"
    first = _config(tmp_path / "a.yaml", synth_manifest, tiny_checkpoint, second_checkpoint, models=models,
                    targets=["m1"], **extra)
    assert _transfer(first, out) == 0
    assert len(crafts.calls) == 1 and (pd.read_csv(out / "results.csv")["model"] == "m1").all()
    crafts.calls.clear()
    both = _config(tmp_path / "b.yaml", synth_manifest, tiny_checkpoint, second_checkpoint, models=models,
                   targets=["m1", "m2"], **extra)
    assert _transfer(both, out) == 0
    assert crafts.calls == []  # the new target is scored from the stored perturbation
    fresh = tmp_path / "fresh"
    assert _transfer(both, fresh) == 0 and len(crafts.calls) == 1
    for name in ("results.csv", "bands.csv"):  # as if both targets had been there from the start
        pd.testing.assert_frame_equal(_results(out, name), _results(fresh, name))
    rows = pd.read_csv(out / "results.csv")
    assert set(rows["model"]) == {"m1", "m2"} and (rows["source"] == "ens").all() and not rows["white_box"].any()
    shas = rows.groupby("model")["model_sha256"].first()
    assert (rows["source_sha256"] == f"{shas['m1']}+{shas['m2']}").all()  # an ensemble is named by its members
    bands = pd.read_csv(out / "bands.csv")
    assert list(bands.columns) == BAND_COLUMNS and set(bands["band"]) == {"0-0.2", "0.2-1"}
    assert len(bands) == 1 * 2 * 2 * 3 * 3  # cases x targets x bands x regions x metrics
    energy = bands.groupby(["model", "band"])["energy_fraction"].first().groupby("model").sum()
    assert energy.to_numpy() == pytest.approx(1.0, abs=1e-6)  # the bands partition the perturbation
    assert (out / "bands_summary.csv").is_file() and len(list((out / "bands").iterdir())) == 1
    matrices = pd.read_csv(out / "matrices.csv")
    assert matrices["transfer_ratio"].isna().all()  # no target is also a source: no white-box reference
    flag = json.loads((out / "sanity.json").read_text())[-1]
    assert flag["name"] == "blackbox_stronger_than_whitebox" and not flag["applicable"]


def test_bad_config_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("manifest: x\n")
    assert main(["transfer", str(bad), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "models" in err
    assert not (tmp_path / "out").exists()
