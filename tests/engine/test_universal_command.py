"""``volrob universal``: the universal perturbation is learned once on the source's training cases, stored, and
reused by every rerun; a changed universal parameter stops the run naming universal/; its two cells (``universal``
and the ``sign_noise`` control) are scored on every target; the config-file form is the same experiment."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from volrob.attacks.threat import ThreatModel
from volrob.attacks.universal import apply_universal, delta_sha256
from volrob.checkpoint import load_checkpoint, save_checkpoint
from volrob.cli.main import main
from volrob.data.manifest import load_manifest
from volrob.data.preprocess import PreprocessConfig
from volrob.engine import universal as universal_mod
from volrob.engine.cases import CaseSource
from volrob.engine.scoring import score_on_source
from volrob.engine.tables import RESULT_COLUMNS, TIME_COLUMNS
from volrob.evaluation.metric_set import resolve_metric_set
from volrob.evaluation.universal_effect import universal_effects
from volrob.report.build import build_report
from volrob.sources import ModelSource

RUN_METRICS = resolve_metric_set("brats2021")  # the synthetic data's default: dice, hd95_brats, nsd

EPS = 8.0


@dataclass
class Learned:
    calls: int = 0


def count_learning(mp: pytest.MonkeyPatch, learned: Learned) -> None:
    real = universal_mod.learn_universal

    def learn(*args: Any, **kwargs: Any) -> Any:
        learned.calls += 1
        return real(*args, **kwargs)

    mp.setattr(universal_mod, "learn_universal", learn)


def _argv(manifest: Path, source: Path, second: Path, out: Path, *extra: str) -> list[str]:
    return ["universal", "--source", str(source), "--source-name", "src", "--target", f"copy={source}",
            "--target", f"jit={second}", "--manifest", str(manifest), "--eps", str(EPS), "--epochs", "1",
            "--crops-per-case", "1", "--step", "2", "-o", str(out), "--threads", "1", "--quiet", *extra]


@dataclass
class Experiment:
    argv: list[str]
    out: Path
    learned: Learned
    text: str


@pytest.fixture(scope="module")
def experiment(tiny_checkpoint: Path, second_checkpoint: Path, synth_manifest: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Experiment]:
    out = tmp_path_factory.mktemp("universal") / "out"
    argv = _argv(synth_manifest, tiny_checkpoint, second_checkpoint, out)
    learned, threads = Learned(), torch.get_num_threads()
    text = io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(text):
            count_learning(mp, learned)
            assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    yield Experiment(argv, out, learned, text.getvalue())


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _delta(out: Path) -> torch.Tensor:
    with np.load(out / "universal" / "delta.npz") as z:
        assert list(z["roi"]) == list(z["delta"].shape[1:]) and float(z["eps"]) == EPS
        return torch.from_numpy(np.array(z["delta"]))


def test_both_cells_on_every_target(experiment: Experiment, synth_manifest: Path) -> None:
    assert experiment.learned.calls == 1
    df = pd.read_csv(experiment.out / "results.csv")
    assert list(df.columns) == RESULT_COLUMNS
    n_eval = len(load_manifest(synth_manifest).split("test"))
    assert set(df["attack"]) == {"universal", "sign_noise"} and set(df["model"]) == {"src", "copy", "jit"}
    assert len(df) == 2 * n_eval * 3 * 3 * 3  # cells x cases x targets x regions x metrics
    assert not df.duplicated(["attack", "model", "case", "region", "metric"]).any()
    assert (df["source"] == "src").all() and (df["white_box"] == (df["model"] == "src")).all()
    assert (df["eps"] == EPS).all() and (df["linf_255"] <= EPS + 1e-3).all()
    noise = df[df["attack"] == "sign_noise"]
    assert noise["linf_255"].to_numpy() == pytest.approx(EPS, abs=1e-3)  # signs sit at the budget
    # one perturbation per (cell, case), the same on every target
    assert (df.groupby(["cell", "case"])[["linf_255", "l2_255", "ssim"]].nunique() == 1).all().all()
    # the copy of the source scores exactly as the source
    cols = ["attack", "case", "region", "metric", "clean", "adversarial"]
    src = df[df.model == "src"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(df[df.model == "copy"][cols].reset_index(drop=True), src)
    delta = _delta(experiment.out)
    assert delta.abs().max() <= EPS / 255 + 1e-7 and delta.shape[0] == 4
    uni = df[df["attack"] == "universal"]
    assert {json.loads(p)["delta_sha256"] for p in uni["params"]} == {delta_sha256(delta)}
    record = json.loads((experiment.out / "universal" / "record.json").read_text())
    assert record["params"]["epochs"] == 1 and record["params"]["source"] == "src"
    assert len(record["params"]["train_cases"]) == len(load_manifest(synth_manifest).split("train"))
    assert record["record"]["params"]["roi"] == list(delta.shape[1:])
    assert all(name in experiment.text for name in ("src", "copy", "jit")) and "universal" in experiment.text


def test_the_report_pairs_the_perturbation_with_its_control(experiment: Experiment, tmp_path: Path) -> None:
    report = build_report(experiment.out, tmp_path / "r.html")
    assert "universal" in report.sections and "whitebox" in report.sections
    shown = pd.read_csv(tmp_path / "r_files" / "universal.csv")
    direct = universal_effects(pd.read_csv(experiment.out / "results.csv"), region="WT", seed=0)
    pd.testing.assert_frame_equal(shown, direct, check_dtype=False)
    assert list(shown["model"]) == ["src", "copy", "jit"]


@pytest.mark.usefixtures("one_thread")
def test_the_universal_rows_tile_the_learned_delta(experiment: Experiment, second_checkpoint: Path,
                                                    synth_manifest: Path) -> None:
    """Oracle: the stored delta applied with apply_universal to the unseen case and scored on another model."""
    df = pd.read_csv(experiment.out / "results.csv")
    jit = ModelSource.from_checkpoint(str(second_checkpoint))
    case = df["case"].iloc[0]
    p = CaseSource(synth_manifest, "test", jit.modalities).prepare(case, jit.preprocessing)
    x_adv = apply_universal(p.x, _delta(experiment.out), ThreatModel(eps=EPS))
    want = {(r["region"], r["metric"]): r["value"]
            for r in score_on_source(jit.predictor, x_adv, p.pre, p.gt, p.data.spacing, torch.device("cpu"),
                                     metric_set=RUN_METRICS)}
    got = df[(df.attack == "universal") & (df.model == "jit") & (df.case == case)]
    assert len(got) == 9
    for r in got.itertuples():
        assert r.adversarial == pytest.approx(want[(r.region, r.metric)], abs=1e-9)
    assert got["linf_255"].iloc[0] == pytest.approx(float((x_adv - p.x).abs().max()) * 255, rel=1e-5)


@pytest.mark.usefixtures("one_thread")
def test_reruns_reuse_the_stored_perturbation(experiment: Experiment, tiny_checkpoint: Path,
                                              second_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    shutil.copytree(experiment.out, out)
    learned = Learned()
    count_learning(monkeypatch, learned)
    argv = _argv(synth_manifest, tiny_checkpoint, second_checkpoint, out)
    before = _files(out)
    assert main(argv) == 0
    assert learned.calls == 0 and json.loads((out / "run.json").read_text())["computed_now"] == 0
    assert _files(out)["universal/delta.npz"] == before["universal/delta.npz"]
    results = pd.read_csv(out / "results.csv").drop(columns=list(TIME_COLUMNS))
    pd.testing.assert_frame_equal(results, pd.read_csv(experiment.out / "results.csv").drop(columns=list(TIME_COLUMNS)))
    # a changed universal parameter is an error naming universal/, before anything is learned or overwritten
    before = _files(out)
    for change in (["--epochs", "2"], ["--step", "1"]):
        capsys.readouterr()
        assert main([*argv, *change]) == 2
        err = capsys.readouterr().err.strip()
        assert "universal/ holds a perturbation learned with other parameters" in err and len(err.splitlines()) == 1
        assert change[0].lstrip("-") in err and "--force" in err
    assert learned.calls == 0 and _files(out) == before
    # the config-file form describes the same experiment: resuming it computes and learns nothing
    config = tmp_path / "universal.yaml"
    raw = {"manifest": str(synth_manifest), "split": "test", "seed": 0,
           "models": [{"name": "src", "checkpoint": str(tiny_checkpoint)},
                      {"name": "copy", "checkpoint": str(tiny_checkpoint)},
                      {"name": "jit", "checkpoint": str(second_checkpoint)}],
           "universal": {"source": "src", "eps": EPS, "epochs": 1, "crops_per_case": 1, "step": 2.0}}
    config.write_text(yaml.safe_dump(raw))
    assert main(["universal", str(config), "-o", str(out), "--threads", "1", "--quiet"]) == 0
    assert learned.calls == 0 and json.loads((out / "run.json").read_text())["computed_now"] == 0
    assert "jit" in capsys.readouterr().out
    for change, word in (({"universal": None}, "no universal section"),
                         ({"attacks": [{"attack": "fgsm", "eps": [4]}]}, "leave attacks empty")):
        config.write_text(yaml.safe_dump({**raw, **change}))
        assert main(["universal", str(config), "-o", str(tmp_path / "x"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert word in err and len(err.splitlines()) == 1
    assert main(["universal", str(config), "--source", str(tiny_checkpoint), "-o", str(tmp_path / "x")]) == 2
    assert "cannot be combined with a config file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("change", "match"), [
    ({"--source": "missing.pt"}, "does not exist"), ({"--target": "nocolon"}, "NAME=CHECKPOINT"),
    ({"--target": "x=missing.pt"}, "does not exist"), ({"--eps": "-1"}, "eps"), ({"--epochs": "0"}, "epochs"),
    ({"--target": "source=SOURCE"}, "given twice"),
])
def test_bad_input(change: dict[str, str], match: str, tiny_checkpoint: Path, synth_manifest: Path,
                   tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    opts = {"--source": str(tiny_checkpoint), "--manifest": str(synth_manifest), "-o": str(tmp_path / "o"),
            "--epochs": "1", **{k: v.replace("SOURCE", str(tiny_checkpoint)) for k, v in change.items()}}
    argv = ["universal", *[s for kv in opts.items() for s in kv], "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err
    assert not (tmp_path / "o").exists()


def test_a_target_in_another_attack_space_is_refused_before_learning(
        tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    other = tmp_path / "other.pt"
    save_checkpoint(dataclasses.replace(ckpt, preprocessing=PreprocessConfig(crop_margin=7)), other)
    learned = Learned()
    count_learning(monkeypatch, learned)
    out = tmp_path / "o"
    assert main(["universal", "--source", str(tiny_checkpoint), "--target", f"other={other}", "--manifest",
                 str(synth_manifest), "--epochs", "1", "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "other preprocesses differently" in err and len(err.splitlines()) == 1
    assert learned.calls == 0  # refused before any learning
    assert not out.exists() or not any(out.iterdir())  # and nothing left that would block the corrected run
