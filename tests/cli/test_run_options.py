"""What a new user tried, fixed once in the engine for every command: a case limit or list everywhere, an option that
cannot apply is an error and one that applies is honoured, a typo in --set names the override, and a plan with an
estimate is printed before the work."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from volrob.checkpoint import load_checkpoint, save_checkpoint
from volrob.cli.main import main
from volrob.models import create as create_model


def _run(*args: str) -> int:
    return main([*args, "--quiet", "--threads", "1"])


@pytest.fixture(scope="module")
def unetr_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) tiny UNETR checkpoint: a model that only accepts its training ROI."""
    ckpt = load_checkpoint(tiny_checkpoint)
    cfg = {**ckpt.model_config, "preset": "tiny"}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create_model("unetr", **cfg)
    path = tmp_path_factory.mktemp("unetr") / "unetr.pt"
    save_checkpoint(dataclasses.replace(ckpt, model_name="unetr", model_config=cfg, state_dict=net.state_dict(),
                                        training_state=None), path)
    return path


@pytest.mark.usefixtures("one_thread")
def test_roi_with_a_checkpoint_is_honoured(synth_manifest: Path, tiny_checkpoint: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for roi, out in (("48,48,48", tmp_path / "roi48"), (None, tmp_path / "default")):
        extra = ["--roi", roi] if roi else []
        assert _run("attack", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--attack",
                    "fgsm", "--eps", "4", "--max-cases", "1", "-o", str(out), "--no-volumes", *extra) == 0
    models = json.loads((tmp_path / "roi48" / "run.json").read_text())["models"]
    assert models["unet"]["window"]["roi_size"] == [48, 48, 48]
    default = json.loads((tmp_path / "default" / "run.json").read_text())["models"]
    assert default["unet"]["window"]["roi_size"] == list(load_checkpoint(tiny_checkpoint).inference.roi_size)


def test_roi_a_model_cannot_take_is_an_error(synth_manifest: Path, unetr_checkpoint: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("evaluate", "--checkpoint", str(unetr_checkpoint), "--manifest", str(synth_manifest),
                "--roi", "48,48,48", "-o", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model unetr only accepts its training ROI [32, 32, 32]" in err[0]
    assert not (tmp_path / "out" / "results.csv").exists()


def test_options_that_cannot_apply_are_errors(synth_manifest: Path, tiny_checkpoint: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"manifest": str(synth_manifest),
                                   "models": [{"name": "m", "checkpoint": str(tiny_checkpoint)}]}))
    cases = [("evaluate", str(cfg), "--checkpoint", str(tiny_checkpoint)),
             ("attack", "--checkpoint", str(tiny_checkpoint), "--weights", "w.pt", "--manifest", str(synth_manifest),
              "--attack", "fgsm"),
             ("attack", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--attack", "fgsm",
              "--param", "seed=3"),
             ("query", str(cfg)),
             ("evaluate", "--manifest", str(synth_manifest), "--cases", "BraTS2021_99999", "--checkpoint",
              str(tiny_checkpoint))]
    wanted = ["cannot be combined with a config file", "--weights and --model-arg go with --model",
              "--param seed: give the seed as the run's --seed", "volrob query runs square3d",
              "cases: ['BraTS2021_99999'] not in the split"]
    for args, text in zip(cases, wanted, strict=True):
        capsys.readouterr()
        assert _run(*args, "-o", str(tmp_path / "out")) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], (args, err)


def test_a_typo_in_set_names_the_override(synth_manifest: Path, tiny_checkpoint: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump({"manifest": str(synth_manifest), "attacks": [{"attack": "fgsm", "eps": [4]}],
                                   "models": [{"name": "m", "checkpoint": str(tiny_checkpoint)}]}))
    assert _run("robustness", str(cfg), "-o", str(tmp_path / "out"), "--set", "max_case=1") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("volrob robustness: error: --set max_case=1: unknown key 'max_case' in the top level")
    assert str(cfg) not in err and "max_cases" in err  # the allowed keys are listed


@pytest.mark.usefixtures("one_thread")
def test_case_limits_everywhere_and_the_plan(synth_manifest: Path, tiny_checkpoint: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump({"manifest": str(synth_manifest), "split": "train",
                                   "attacks": [{"attack": "fgsm", "eps": [4]}],
                                   "models": [{"name": "m", "checkpoint": str(tiny_checkpoint)}]}))
    train = [c["id"] for c in json.loads(synth_manifest.read_text())["cases"] if c["split"] == "train"]
    runs = {
        "robustness": ("robustness", str(cfg), "--set", "max_cases=1"),
        "robustness-cases": ("robustness", str(cfg), "--cases", f"{train[2]},{train[0]}"),
        "query": ("query", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--split", "train",
                  "--queries", "4", "--checkpoints", "2", "--max-cases", "1"),
        "evaluate": ("evaluate", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest),
                     "--split", "train", "--max-cases", "1", "--no-predictions"),
    }
    expected = {"robustness": [train[0]], "robustness-cases": [train[2], train[0]], "query": [train[0]],
                "evaluate": [train[0]]}
    for name, args in runs.items():
        capsys.readouterr()
        assert main([*args, "-o", str(tmp_path / name), "--threads", "1"]) == 0, name
        out = capsys.readouterr().out
        assert out.startswith("plan: ") and "estimated" in out, name
        assert json.loads((tmp_path / name / "run.json").read_text())["cases"] == expected[name], name


@pytest.mark.usefixtures("one_thread")
def test_set_applies_to_flag_commands_too(synth_manifest: Path, tiny_checkpoint: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("attack", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--attack", "fgsm",
                "--eps", "4", "--max-cases", "1", "-o", str(tmp_path / "a"), "--no-volumes", "--set", "seed=5",
                "--set", "region=ET") == 0
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["config"]["seed"] == 5 and run["config"]["region"] == "ET"
    assert _run("attack", "--checkpoint", str(tiny_checkpoint), "--manifest", str(synth_manifest), "--attack", "fgsm",
                "-o", str(tmp_path / "b"), "--set", "sead=5") == 2
    assert capsys.readouterr().err.strip().startswith("volrob attack: error: --set sead=5: unknown key 'sead'")
