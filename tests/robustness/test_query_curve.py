"""``volrob query``: Dice vs queries of square3d; snapshots equal separate shorter runs, queries counted, no grads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.image
import pandas as pd
import pytest
import torch

from volrob import attacks
from volrob.cli.main import main
from volrob.data.cases import load_case
from volrob.data.labels import canonical_to_regions
from volrob.data.manifest import labelled_cases, load_manifest
from volrob.data.preprocess import preprocess
from volrob.errors import ConfigError
from volrob.evaluation.metrics import case_metrics
from volrob.inference.predictor import Predictor
from volrob.inference.segment import predict_regions, to_source_grid
from volrob.robustness import query_curve as qc
from volrob.robustness import scoring
from volrob.robustness.attack_run import case_seed
from volrob.robustness.model_source import ModelSource

QUERIES, CHECKPOINTS, EPS = 6, [2, 4], 8.0
WINDOW = {"roi_size": [48, 48, 48]}  # one window covers a whole synthetic case: fewer network calls per query


@dataclass
class Calls:
    """Forward passes of the predictor, split into attack queries and evaluation (segmentation for scoring)."""

    attack: int = 0
    evaluation: int = 0
    grad_enabled: list[bool] = field(default_factory=list)
    scoring: bool = False


@dataclass
class Run:
    result: qc.QueryCurveResult
    calls: Calls
    n_cases: int


@pytest.fixture(scope="module")
def run(tiny_checkpoint: Path, synth_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    calls = Calls()
    forward, predict = Predictor.forward, scoring.predict_regions

    def counting_forward(self: Predictor, x: torch.Tensor) -> torch.Tensor:
        calls.grad_enabled.append(torch.is_grad_enabled())
        if calls.scoring:
            calls.evaluation += 1
        else:
            calls.attack += 1
        return forward(self, x)

    def scoring_predict(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.scoring = True
        try:
            return predict(*args, **kwargs)
        finally:
            calls.scoring = False

    out = tmp_path_factory.mktemp("query") / "q"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Predictor, "forward", counting_forward)
        mp.setattr(scoring, "predict_regions", scoring_predict)
        src = ModelSource.from_checkpoint(tiny_checkpoint, WINDOW)
        res = qc.query_curve(src, synth_manifest, out, split="val", eps=EPS, queries=QUERIES,
                             checkpoints=CHECKPOINTS, seed=0, device="cpu", progress=False)
    assert all(p.grad is None for p in src.predictor.parameters())  # no gradient ever reached the weights
    n_cases = len(labelled_cases(load_manifest(synth_manifest), "val", src.modalities))
    yield Run(res, calls, n_cases)


def test_table_shape_and_columns(run: Run) -> None:
    df = pd.read_csv(run.result.out_dir / "queries.csv")
    assert list(df.columns) == qc.QUERY_COLUMNS
    assert run.n_cases >= 1
    assert len(df) == run.n_cases * (1 + len(CHECKPOINTS) + 1) * 3 * 3  # cases x (clean + checkpoints) x R x M
    assert set(df["queries"]) == {0, 2, 4, 6}
    assert set(df["region"]) == {"TC", "WT", "ET"} and set(df["metric"]) == {"dice", "hd95", "nsd"}
    assert df["value"].notna().all()
    assert (df["linf_255"] <= EPS + 1e-3).all()
    assert (df.loc[df["queries"] == 0, "linf_255"] == 0).all()
    assert (df.loc[df["queries"] > 0, "linf_255"] > 0).all()
    params = json.loads(df["params"].iloc[0])
    assert params["attack"] == "square3d" and params["queries"] == QUERIES and params["checkpoints"] == [2, 4, 6]
    assert params["threat"]["eps"] == EPS
    run_json = json.loads((run.result.out_dir / "run.json").read_text())
    assert run_json["attack_options"]["queries"] == QUERIES and "environment" in run_json
    assert set(run_json["records"]) == set(df["case"])
    assert all(r["queries_used"] == [QUERIES] for r in run_json["records"].values())


def test_forward_passes_are_counted_and_never_differentiated(run: Run) -> None:
    assert run.calls.attack == QUERIES * run.n_cases  # the attack's queries, exactly the budget
    assert run.calls.evaluation == (1 + len(CHECKPOINTS) + 1) * run.n_cases  # clean + one per snapshot
    assert run.calls.grad_enabled and not any(run.calls.grad_enabled)


def test_snapshots_equal_separate_shorter_runs(run: Run, tiny_checkpoint: Path, synth_manifest: Path) -> None:
    """Oracle: for every q, a fresh square3d run with budget q (same seed and schedule) scored independently."""
    df = run.result.rows
    src = ModelSource.from_checkpoint(tiny_checkpoint, WINDOW)
    predictor, dev = src.predictor.eval(), torch.device("cpu")
    man = load_manifest(synth_manifest)
    for case in labelled_cases(man, "val", src.modalities):
        data = load_case(man, case)
        p = preprocess(data.image, data.label, data.affine, src.preprocessing)
        x = p.image.as_tensor()[None]
        target = canonical_to_regions(p.label.as_tensor()[None]).float()  # type: ignore[union-attr]
        gt = canonical_to_regions(data.label)
        for q in (0, 2, 4, 6):
            if q == 0:
                inp = x
            else:
                atk = attacks.create("square3d", eps=EPS, queries=q, schedule_queries=QUERIES, p_init=0.05,
                                     seed=case_seed(0, case.id))
                inp = atk(predictor, x, target).x_adv
            on_source = to_source_grid(predict_regions(predictor, inp[0], dev).float(), p, nearest=True) > 0.5
            expected = pd.DataFrame(case_metrics(on_source, gt, data.spacing)).set_index(["region", "metric"])
            got = df[(df["case"] == case.id) & (df["queries"] == q)].set_index(["region", "metric"])
            assert len(got) == len(expected) == 9
            pd.testing.assert_series_equal(got["value"].sort_index(), expected["value"].sort_index(),
                                           check_names=False)
            assert got["linf_255"].iloc[0] == pytest.approx(float((inp - x).abs().max()) * 255)


def test_refuses_to_overwrite(run: Run, tiny_checkpoint: Path, synth_manifest: Path) -> None:
    out = run.result.out_dir
    before = (out / "queries.csv").read_bytes()
    with pytest.raises(ConfigError, match="queries.csv") as err:
        qc.query_curve(tiny_checkpoint, synth_manifest, out, split="val", queries=QUERIES, checkpoints=CHECKPOINTS,
                       progress=False)
    assert str(out) in str(err.value) and "\n" not in str(err.value)
    assert (out / "queries.csv").read_bytes() == before


@pytest.mark.parametrize(("options", "word"), [
    ({"queries": 0}, "queries"),
    ({"checkpoints": [4, 2]}, "strictly increasing"),
    ({"checkpoints": [2, 7]}, "checkpoints"),
    ({"checkpoints": 3}, "checkpoints"),
    ({"eps": -1.0}, "eps"),
    ({"p_init": 0.0}, "p_init"),
    ({"empty_policy": "nope"}, "nope"),
])
def test_bad_options(options: dict[str, Any], word: str, tiny_checkpoint: Path, synth_manifest: Path,
                     tmp_path: Path) -> None:
    kwargs = {"queries": QUERIES, "checkpoints": CHECKPOINTS, **options}
    with pytest.raises(ConfigError, match=word) as err:
        qc.query_curve(tiny_checkpoint, synth_manifest, tmp_path / "x", split="val", progress=False, **kwargs)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()


def test_query_checkpoints_appends_the_budget() -> None:
    assert qc.query_checkpoints([10, 30], 100) == (10, 30, 100)
    assert qc.query_checkpoints((10, 100), 100) == (10, 100)
    assert qc.query_checkpoints([], 5) == (5,)


def test_cli_refuses_then_forces(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    (out_dir / "queries.csv").write_text("previous table\n")
    argv = ["query", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--split", "val",
            "--queries", "2", "--checkpoints", "1", "--seed", "1", "--device", "cpu", "-o", str(out_dir), "--quiet"]
    assert main(argv) == 2  # refuses to overwrite without --force
    err = capsys.readouterr().err.strip()
    assert "--force" in err and str(out_dir) in err and len(err.splitlines()) == 1
    assert (out_dir / "queries.csv").read_text() == "previous table\n"
    assert main([*argv, "--force"]) == 0
    out = capsys.readouterr().out
    assert "mean WT Dice" in out and "(clean)" in out
    df = pd.read_csv(out_dir / "queries.csv")
    assert set(df["queries"]) == {0, 1, 2}
    assert json.loads((out_dir / "run.json").read_text())["seed"] == 1
    image = matplotlib.image.imread(out_dir / "queries.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.parametrize(("extra", "word"), [
    (["--queries", "0"], "queries"),
    (["--checkpoints", "4", "2"], "strictly increasing"),
    (["--checkpoint", "missing.pt"], "missing.pt"),  # the last --checkpoint wins
])
def test_cli_bad_input(extra: list[str], word: str, tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["query", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--split", "val",
            "--queries", "6", "--checkpoints", "2", "4", "-o", str(tmp_path / "o"), "--quiet", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert word in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
