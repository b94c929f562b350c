"""``volrob query``: Dice vs queries of square3d. Each row scores the most damaging input the attack held at that
many queries (checked against separate shorter runs), so the curve never rises and starts at the clean score;
the attack's forward passes are exactly its budget, never differentiated, and scoring is never counted as a
query. The config-file form runs the same experiment and refuses other attacks."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.image
import pandas as pd
import pytest
import torch
import yaml

from volrob import attacks
from volrob.cli.main import main
from volrob.cli.query_cmd import checkpoints_with_budget
from volrob.engine import scoring
from volrob.engine.cases import CaseSource
from volrob.engine.cells import Cell
from volrob.engine.scoring import score_on_source
from volrob.engine.seeds import case_seed
from volrob.engine.tables import QUERY_COLUMNS, RESULT_COLUMNS, TIME_COLUMNS
from volrob.evaluation.metric_set import resolve_metric_set
from volrob.inference.predictor import Predictor
from volrob.sources import ModelSource

RUN_METRICS = resolve_metric_set("brats2021")  # the synthetic data's default: dice, hd95_brats, nsd

QUERIES, CHECKPOINTS, EPS = 6, [2, 4], 8.0
COUNTS = [0, *CHECKPOINTS, QUERIES]


@dataclass
class Calls:
    """Forward passes of any predictor, split into the attack's queries and scoring (segmentation)."""

    attack: int = 0
    scoring: int = 0
    attack_grad: list[bool] = field(default_factory=list)
    scored: list[bytes] = field(default_factory=list)
    state: str = ""
    predictors: list[Predictor] = field(default_factory=list)


@dataclass
class Run:
    out: Path
    calls: Calls
    cases: list[str]
    text: str


def _flags(manifest: Path, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["query", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--split", "val", "--eps",
            str(EPS), "--queries", str(QUERIES), "--checkpoints", *map(str, CHECKPOINTS), "-o", str(out),
            "--threads", "1", "--quiet", *extra]


@pytest.fixture(scope="module")
def run(tiny_checkpoint: Path, synth_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    calls = Calls()
    forward, predict, create = Predictor.forward, scoring.predict_regions, Cell.create_attack

    def counting_forward(self: Predictor, x: torch.Tensor) -> torch.Tensor:
        if calls.state == "attack":
            calls.attack += 1
            calls.attack_grad.append(torch.is_grad_enabled())
        elif calls.state == "scoring":
            calls.scoring += 1
        if self not in calls.predictors:
            calls.predictors.append(self)
        return forward(self, x)

    def within(state: str, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if state == "scoring":  # predict_regions(predictor, image, device): remember what was scored
                calls.scored.append(args[1].detach().cpu().numpy().tobytes())
            calls.state = state
            try:
                return fn(*args, **kwargs)
            finally:
                calls.state = ""
        return wrapped

    def create_attack(cell: Cell, seed: int) -> Any:
        atk = create(cell, seed)
        atk.run = within("attack", atk.run)
        return atk

    out = tmp_path_factory.mktemp("query") / "q"
    threads = torch.get_num_threads()
    text = io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(text):
            mp.setattr(Predictor, "forward", counting_forward)
            mp.setattr(scoring, "predict_regions", within("scoring", predict))
            mp.setattr(Cell, "create_attack", create_attack)
            assert main(_flags(synth_manifest, tiny_checkpoint, out)) == 0
    finally:
        torch.set_num_threads(threads)
    cases = json.loads((out / "run.json").read_text())["cases"]
    yield Run(out, calls, cases, text.getvalue())


def test_tables(run: Run) -> None:
    df = pd.read_csv(run.out / "queries.csv")
    assert list(df.columns) == QUERY_COLUMNS and len(run.cases) == 1
    assert len(df) == len(run.cases) * len(COUNTS) * 3 * 3  # cases x (clean + checkpoints) x regions x metrics
    assert sorted(df["queries"].unique()) == COUNTS and df["adversarial"].notna().all()
    assert (df["linf_255"] <= EPS + 1e-3).all() and (df["selected_queries"] <= df["queries"]).all()
    params = json.loads(df["params"].iloc[0])
    assert params["queries"] == QUERIES and params["checkpoints"] == [*CHECKPOINTS, QUERIES]
    assert json.loads(df["threat"].iloc[0])["eps"] == EPS and (df["attack"] == "square3d").all()
    full = pd.read_csv(run.out / "results.csv")
    assert list(full.columns) == RESULT_COLUMNS and len(full) == len(run.cases) * 9
    run_json = json.loads((run.out / "run.json").read_text())
    assert run_json["command"] == "query" and run_json["config"]["attacks"][0]["attack"] == "square3d"
    unit = json.loads(next((run.out / "units").rglob("*.json")).read_text())
    assert unit["record"]["queries_used"] == [QUERIES]  # scoring took nothing from the budget
    image = matplotlib.image.imread(run.out / "queries.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert "mean WT Dice" in run.text and "(clean)" in run.text


def test_the_curve_starts_at_the_clean_score_and_never_rises(run: Run) -> None:
    df = pd.read_csv(run.out / "queries.csv")
    start = df[df["queries"] == 0]
    assert (start["adversarial"] == start["clean"]).all() and (start["degradation"] == 0).all()
    assert (start["linf_255"] == 0).all() and (start["selected_queries"] == 0).all()
    wt = df[(df["region"] == "WT") & (df["metric"] == "dice")]
    for _, g in wt.groupby("case"):
        curve = g.sort_values("queries")["adversarial"].to_numpy()
        assert (curve[1:] <= curve[:-1]).all()
    held = df.set_index(["case", "queries", "region", "metric"])
    for row in df.itertuples():  # every row is the row of the count it selected
        chosen = held.loc[(row.case, row.selected_queries, row.region, row.metric)]
        assert chosen["adversarial"] == row.adversarial and chosen["selected_queries"] == row.selected_queries


def test_forward_passes_are_the_budget_and_never_differentiated(run: Run) -> None:
    n = len(run.cases)
    # the attack's queries: exactly the budget per case, and once more for the worst case's view (views/)
    assert run.calls.attack == QUERIES * (n + 1)
    assert run.calls.attack_grad and not any(run.calls.attack_grad)
    # the clean input, the result and each snapshot that differs from both: every distinct input scored once
    assert run.calls.scoring == len(run.calls.scored) and len(set(run.calls.scored)) == len(run.calls.scored)
    assert n * 2 <= run.calls.scoring <= n * (2 + len(CHECKPOINTS))
    assert run.calls.predictors and all(p.grad is None for pr in run.calls.predictors for p in pr.parameters())


@pytest.mark.usefixtures("one_thread")
def test_rows_are_the_inputs_held_by_shorter_runs(run: Run, tiny_checkpoint: Path, synth_manifest: Path) -> None:
    """Oracle: for every count q, a fresh square3d run with budget q (same seed and schedule) scored
    independently; the row at q is the lowest WT Dice among the clean input and the runs of budget <= q."""
    df = pd.read_csv(run.out / "queries.csv").set_index(["case", "queries", "region", "metric"])
    full = pd.read_csv(run.out / "results.csv").set_index(["case", "region", "metric"])
    src = ModelSource.from_checkpoint(str(tiny_checkpoint))
    predictor, cpu = src.predictor.eval(), torch.device("cpu")
    cases = CaseSource(synth_manifest, "val", src.modalities)
    for case in run.cases:
        p = cases.prepare(case, src.preprocessing)
        scores, linf = {}, {}
        for q in COUNTS:
            x_adv = p.x
            if q:
                atk = attacks.create("square3d", eps=EPS, queries=q, schedule_queries=QUERIES, p_init=0.05,
                                     seed=case_seed(0, case))
                x_adv = atk(predictor, p.x, p.target(predictor.output_mode)).x_adv
            rows = score_on_source(predictor, x_adv, p.pre, p.gt, p.data.spacing, cpu, metric_set=RUN_METRICS)
            scores[q] = {(r["region"], r["metric"]): r["value"] for r in rows}
            linf[q] = float((x_adv - p.x).abs().max()) * 255
        for (region, metric), value in scores[QUERIES].items():
            assert full.loc[(case, region, metric), "adversarial"] == pytest.approx(value, abs=1e-9)
        for q in COUNTS:
            best = min((k for k in COUNTS if k <= q), key=lambda k: (scores[k][("WT", "dice")], k))
            for (region, metric), value in scores[best].items():
                row = df.loc[(case, q, region, metric)]
                assert row["selected_queries"] == best and row["adversarial"] == pytest.approx(value, abs=1e-9)
                assert row["linf_255"] == pytest.approx(linf[best], abs=1e-4)


@pytest.mark.usefixtures("one_thread")
def test_config_file_form(run: Run, tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q"
    shutil.copytree(run.out, out)
    attack = {"attack": "square3d", "options": {"eps": EPS, "queries": QUERIES, "p_init": 0.05,
                                                "checkpoints": [*CHECKPOINTS, QUERIES]}}
    raw = {"manifest": str(synth_manifest), "split": "val", "models": [{"name": "unet", "checkpoint":
                                                                         str(tiny_checkpoint)}], "attacks": [attack]}
    config = tmp_path / "query.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["query", str(config), "-o", str(out), "--threads", "1", "--quiet"]) == 0
    assert "(clean)" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["computed_now"] == 0  # the same experiment as the flags
    pd.testing.assert_frame_equal(pd.read_csv(out / "queries.csv").drop(columns=list(TIME_COLUMNS)),
                                  pd.read_csv(run.out / "queries.csv").drop(columns=list(TIME_COLUMNS)))
    others = [{"attack": "pgd", "options": {"steps": 2}, "eps": [8]},
              {"attack": "square3d", "options": {"queries": 4}}]  # no checkpoints: no curve to draw
    for other in others:
        config.write_text(yaml.safe_dump({**raw, "attacks": [attack, other]}))
        assert main(["query", str(config), "-o", str(tmp_path / "x"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "volrob query runs square3d" in err and str(config) in err and len(err.splitlines()) == 1
    config.write_text(yaml.safe_dump(raw))
    assert main(["query", str(config), "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / "x")]) == 2
    assert "cannot be combined with a config file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("extra", "word"), [
    (["--queries", "0"], "queries"),
    (["--checkpoints", "4", "2"], "strictly increasing"),
    (["--checkpoints", "2", "7"], "checkpoints"),
    (["--eps", "-1"], "eps"),
    (["--p-init", "0"], "p_init"),
    (["--checkpoint", "missing.pt"], "missing.pt"),  # the last --checkpoint wins
])
def test_bad_input(extra: list[str], word: str, tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    assert main(_flags(synth_manifest, tiny_checkpoint, tmp_path / "o", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert word in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_refuses_a_foreign_folder_then_forces(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "queries.csv").write_text("previous table\n")
    (out / "notes.txt").write_text("mine\n")
    argv = ["query", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--split", "val",
            "--queries", "2", "--checkpoints", "1", "--seed", "1", "-o", str(out), "--threads", "1", "--quiet"]
    assert main(argv) == 2  # refuses to write into a folder it did not make without --force
    err = capsys.readouterr().err.strip()
    assert "--force" in err and str(out) in err and len(err.splitlines()) == 1
    assert (out / "queries.csv").read_text() == "previous table\n"
    assert main([*argv, "--force"]) == 0
    df = pd.read_csv(out / "queries.csv")
    assert sorted(df["queries"].unique()) == [0, 1, 2] and (df["seed"] == case_seed(1, df["case"].iloc[0])).all()
    assert json.loads((out / "run.json").read_text())["config"]["seed"] == 1
    assert (out / "notes.txt").read_text() == "mine\n"  # --force removes volrob's own files only


def test_checkpoints_with_budget() -> None:
    assert checkpoints_with_budget([10, 30], 100) == [10, 30, 100]
    assert checkpoints_with_budget([10, 100], 100) == [10, 100]
    assert checkpoints_with_budget([], 5) == [5]
