"""A whole study from one file: every stage runs and lands where study.json says; a rerun is served from the cache;
changing one stage's parameters reruns that stage (and what reads it) only; an interrupted training resumes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from helpers.torchrun import torchrun

from volrob.cli.main import main
from volrob.errors import ConfigError
from volrob.study.config import load_study
from volrob.study.stages import train_config

ROOT = Path(__file__).resolve().parents[2]
TINY = {"model.options": {}, "model.preset": "tiny", "inference.roi_size": [32, 32, 32], "train.epochs": 1,
        "train.val_every": 1, "train.amp": False}


def study(checkpoint: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "tiny", "seed": 0, "device": "cpu",
        "data": {"synth": {"cases": 5, "shape": [40, 40, 40], "val_fraction": 0.2, "test_fraction": 0.4}},
        "models": [{"name": "unet", "config": str(ROOT / "configs" / "unet.yaml"), "set": TINY},
                   {"name": "given", "checkpoint": str(checkpoint)}],
        "evaluate": {"split": "test"},
        "grid": {"split": "test", "max_cases": 1, "attacks": [{"attack": "fgsm", "eps": [4]}]},
        "transfer": {"split": "test", "max_cases": 1, "attacks": [{"attack": "fgsm", "eps": [8]}]},
        "defend": [{"name": "unet_at", "source": "unet", "defence": {"name": "fgsm_rs", "options": {"eps": 4}}}],
        "compare": {"split": "test", "max_cases": 2, "attacks": [{"attack": "fgsm", "eps": [4]}]},
        **extra}


def _stamps(out: Path) -> dict[Path, int]:
    """Every file's mtime but the index and the report, which every run writes again from the stages' tables."""
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in ("study.json",
            "report.html") and "report_files" not in p.parts}


@pytest.mark.usefixtures("one_thread")
def test_study_runs_caches_and_reruns_only_what_changed(tiny_checkpoint: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(study(tiny_checkpoint)))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "-o", str(out), "--quiet", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    index = json.loads((out / "study.json").read_text())
    assert set(index["stages"]) == {"data", "evaluate", "grid", "transfer", "compare"}
    assert set(index["checkpoints"]) == {"unet", "given", "unet_at"}
    for stage in index["stages"].values():
        assert json.loads((out / stage / "stage.json").read_text())["status"] == "finished"
    evaluated = pd.read_csv(out / index["stages"]["evaluate"] / "results.csv")
    assert set(evaluated["model"]) == {"unet", "given"}
    matrices = pd.read_csv(out / index["stages"]["transfer"] / "matrices.csv")
    assert {(r.source, r.model) for r in matrices.itertuples()} == {(a, b) for a in ("unet", "given")
                                                                     for b in ("unet", "given")}
    comparison = pd.read_csv(out / index["stages"]["compare"] / "comparison.csv")
    assert set(comparison["model"]) == {"unet", "unet_at"} and (comparison["reference"] == "unet").all()
    assert set(comparison["defence"]) == {"none", "fgsm_rs"}
    assert "synthetic phantoms" in text and str(out / "study.json") in text
    assert text.rstrip().endswith(f"report: {out / 'report.html'}") and (out / "report_files").is_dir()

    stamps = _stamps(out)
    tic = time.perf_counter()
    assert main(["run", str(cfg), "-o", str(out), "--quiet", "--threads", "1"]) == 0
    assert time.perf_counter() - tic < 30  # served from the cache (a few seconds; generous for a busy machine)
    assert _stamps(out) == stamps  # nothing was rewritten
    said = capsys.readouterr().out
    assert said.count(": cached (") == 1 + 2 + 4  # the data, two trainings and four engine stages

    assert main(["run", str(cfg), "-o", str(out), "--quiet", "--threads", "1",
                 "--set", "grid.attacks=[{attack: fgsm, eps: [2]}]"]) == 0
    again = json.loads((out / "study.json").read_text())
    assert again["stages"]["grid"] != index["stages"]["grid"]  # a new grid folder …
    assert {k: v for k, v in again["stages"].items() if k != "grid"} == \
        {k: v for k, v in index["stages"].items() if k != "grid"}  # … and every other stage reused
    assert all(_stamps(out).get(p) == s for p, s in stamps.items())  # the old grid is kept, nothing rewritten

    train = next((out / "train").glob("unet-*"))
    best = (train / "best.pt").stat().st_mtime_ns
    (train / "stage.json").unlink()  # as if the run stopped before the training stage finished
    assert main(["run", str(cfg), "-o", str(out), "--threads", "1"]) == 0
    assert "train unet: resuming" in capsys.readouterr().out
    assert (train / "best.pt").stat().st_mtime_ns == best and (train / "stage.json").is_file()


@pytest.mark.parametrize(("change", "match"), [
    (lambda s: s.update(models=[]), "models: expected a non-empty list"),
    (lambda s: s["models"][0].update(checkpoint="x.pt"), r"models\[0\]: give exactly one of config"),
    (lambda s: s["models"][1].update(set={"train.epochs": 1}), r"models\[1\].set: training overrides need a config"),
    (lambda s: s["models"].append(dict(s["models"][1])), r"models\[2\].name: 'given' must be unique"),
    (lambda s: s["defend"][0].update(source="given"), r"defend\[0\].source: 'given' is not a model trained"),
    (lambda s: s["defend"][0].update(name="unet"), r"defend\[0\].name: 'unet' must be a new unique label"),
    (lambda s: s["defend"][0].update(defence={"name": "pgd"}), r"defend\[0\].defence: .*unknown defence 'pgd'"),
    (lambda s: s["defend"][0]["defence"].update(options={"eps": -1}), r"defend\[0\].defence: .*eps"),
    (lambda s: s["grid"].update(models=[]), r"grid: \['models'\] are set by the study"),
    (lambda s: s["grid"].update(attacks=[]), "grid.attacks: expected a non-empty list"),
    (lambda s: s["grid"]["attacks"][0].update(attack="fgs"), r"grid.attacks\[0\]: unknown attack 'fgs'"),
    (lambda s: s["transfer"].update(maxcases=1), "transfer: unknown key"),
    (lambda s: s["evaluate"].update(attacks=[{"attack": "fgsm"}]), "evaluate.attacks: the evaluation stage"),
    (lambda s: s.update(data={"synth": {}, "manifest": "m.json"}), "data: give exactly one of synth and manifest"),
    (lambda s: (s.pop("defend"), s["compare"]), "compare: needs defended models"),
])
def test_bad_studies(tiny_checkpoint: Path, tmp_path: Path, change: Any, match: str) -> None:
    raw = study(tiny_checkpoint)
    change(raw)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match) as info:
        load_study(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


def test_shipped_study_configs_load(synth_manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # studies name their training configs relative to the repository root
    paths = sorted((ROOT / "configs" / "studies").glob("*.yaml"))
    assert {p.name for p in paths} >= {"quickstart.yaml", "brats.yaml"}
    for path in paths:
        real_data = "manifest:" in path.read_text().split("models:")[0]
        # a real-data study names a manifest the repository cannot hold: point it at a synthetic one
        cfg = load_study(path, [f"data.manifest={synth_manifest}"] if real_data else [])
        for m in cfg.models:
            if m.config is not None:  # every training config with its overrides is valid
                train_config(m.config, m.set, manifest=synth_manifest, seed=0, device="cpu")


def test_study_under_torchrun(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Two processes: training with DDP, units sharded; the tables equal a single process's."""
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(study(tiny_checkpoint, defend=[], compare=None)))
    assert main(["run", str(cfg), "-o", str(tmp_path / "one"), "--quiet", "--threads", "1"]) == 0
    done = torchrun("run", str(cfg), "-o", str(tmp_path / "two"), "--quiet", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "study.json").read_text())
    two = json.loads((tmp_path / "two" / "study.json").read_text())
    grid_one = pd.read_csv(tmp_path / "one" / one["stages"]["grid"] / "results.csv")
    grid_two = pd.read_csv(tmp_path / "two" / two["stages"]["grid"] / "results.csv")
    # DDP training on two ranks sees other batches than one process, so the models differ; the given checkpoint
    # is the same model in both: its rows must be equal
    given = ["case", "region", "metric", "clean", "adversarial", "linf_255"]
    pd.testing.assert_frame_equal(grid_one[grid_one.model == "given"][given].reset_index(drop=True),
                                  grid_two[grid_two.model == "given"][given].reset_index(drop=True))
    trained = json.loads((tmp_path / "two" / two["checkpoints"]["unet"].replace("best.pt", "stage.json")).read_text())
    assert trained["status"] == "finished"
