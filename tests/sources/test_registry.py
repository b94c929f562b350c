"""Model sources of a registered kind (``scheme:FOLDER``): the registry, their options in configs, flags and
studies, and one end to end through ``volrob evaluate`` with a source registered by the test."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from volrob.cli.main import main
from volrob.data.preprocess import PreprocessConfig
from volrob.engine.config import parse_run_config
from volrob.errors import ConfigError
from volrob.inference.normalise import ZScoreNorm
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.sources import ModelSource, available_sources, load_source, register_source, source_scheme
from volrob.sources import base as source_base
from volrob.study.config import load_study

CALLS: list[dict[str, Any]] = []


def _folder_loader(location: str, *, options: Mapping[str, Any], window: Mapping[str, Any],
                   name: str | None) -> ModelSource:
    """A toy folder kind: ``net.json`` says the seed of a small conv net that z-scores its input."""
    CALLS.append({"location": location, "options": dict(options), "window": dict(window)})
    spec = json.loads((Path(location) / "net.json").read_text())
    torch.manual_seed(spec["seed"])
    net = nn.Conv3d(4, 4, 3, padding=1)
    win = SlidingWindowConfig.from_dict({"roi_size": [16, 16, 16], **window})
    pred = Predictor(net, window=win, norm=ZScoreNorm(4), output_mode="labels")
    pre = PreprocessConfig(orientation=None, spacing=None, crop_margin=0, scaling="linear")
    return ModelSource(name or "toy", pred, pre, ["t1", "t1ce", "t2", "flair"], f"{spec['seed']:064d}",
                       {"folder": location, "fixed_input": bool(options.get("fixed"))})


@pytest.fixture()
def toy_source(tmp_path: Path) -> Iterator[Path]:
    """The ``toy`` kind registered for one test, and one folder of it."""
    register_source("toy", options=("fixed", "depth"))(_folder_loader)
    folder = tmp_path / "toy_model"
    folder.mkdir()
    (folder / "net.json").write_text(json.dumps({"seed": 3}))
    CALLS.clear()
    try:
        yield folder
    finally:
        source_base._LOADERS.pop("toy", None)
        source_base._OPTIONS.pop("toy", None)


def test_registry(toy_source: Path) -> None:
    assert "toy" in available_sources()
    assert source_scheme(f"toy:{toy_source}") == ("toy", str(toy_source))
    assert source_scheme("monai.networks.nets:UNet") is None
    src = load_source(f"toy:{toy_source}", options={"depth": 2}, window={"sw_batch_size": 3}, name="mine")
    assert src.name == "mine" and src.predictor.window.sw_batch_size == 3
    assert CALLS[-1] == {"location": str(toy_source), "options": {"depth": 2}, "window": {"sw_batch_size": 3}}
    with pytest.raises(ConfigError, match=r"options: \['colour'\] do not apply to toy models"):
        load_source(f"toy:{toy_source}", options={"colour": 1})
    with pytest.raises(ConfigError, match="give the folder after 'toy:'"):
        load_source("toy:")
    with pytest.raises(ConfigError, match="not a registered model source"):
        load_source("nothing:here")
    with pytest.raises(ConfigError, match="registered twice"):
        register_source("toy")(_folder_loader)


def test_with_window_keeps_a_fixed_roi(toy_source: Path) -> None:
    src = load_source(f"toy:{toy_source}", options={"fixed": True})
    assert src.with_window({"overlap": 0.25}).window.overlap == 0.25
    with pytest.raises(ConfigError, match="only accepts its ROI"):
        src.with_window({"roi_size": [8, 8, 8]})


def _run_config(manifest: Path, **model: Any) -> dict[str, Any]:
    return {"manifest": str(manifest), "models": [{"name": "m", **model}]}


def test_run_config_entries(toy_source: Path, synth_manifest: Path, tmp_path: Path) -> None:
    cfg = parse_run_config(_run_config(synth_manifest, model=f"toy:{toy_source}", options={"depth": 1}))
    assert cfg.models[0].kind == "toy" and cfg.models[0].model == f"toy:{toy_source.resolve()}"
    bad = [
        ({"model": f"toy:{tmp_path / 'missing'}"}, "toy folder does not exist"),
        ({"model": f"toy:{toy_source}", "weights": str(synth_manifest)}, "brings its own weights"),
        ({"model": f"toy:{toy_source}", "mean": [0.0] * 4}, "brings its own weights"),
        ({"model": f"toy:{toy_source}", "output_mode": "labels"}, "brings its own weights"),
        ({"model": "monai.networks.nets:UNet", "options": {"depth": 1}}, "only models of a registered kind"),
    ]
    for model, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_run_config(_run_config(synth_manifest, **model))


def _evaluate(*args: str) -> int:
    return main(["evaluate", "--quiet", "--threads", "1", "--split", "val", "--no-predictions", *args])


@pytest.mark.usefixtures("one_thread")
def test_evaluate_end_to_end_with_flags(toy_source: Path, synth_manifest: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ev"
    assert _evaluate("--model", f"toy:{toy_source}", "--manifest", str(synth_manifest), "-o", str(out),
                     "--roi", "16,16,16") == 0
    df = pd.read_csv(out / "results.csv")
    assert set(df["model"]) == {"toy_toy_model"} and df["clean"].notna().all()
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["models"][0]["model"] == f"toy:{toy_source.resolve()}"
    assert CALLS[-1]["window"]["roi_size"] == [16, 16, 16]
    capsys.readouterr()
    refused = [
        (["--folds", "0,1"], "--folds do(es) not apply to toy models"),
        (["--weights", str(synth_manifest)], "--weights: a toy model brings its own weights"),
        (["--output-mode", "labels"], "--output-mode: a toy model brings its own"),
    ]
    for extra, message in refused:
        assert _evaluate("--model", f"toy:{toy_source}", "--manifest", str(synth_manifest), "-o",
                         str(tmp_path / "x"), *extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert _evaluate("--model", "monai.networks.nets:UNet", "--manifest", str(synth_manifest), "-o",
                     str(tmp_path / "y"), "--trust-bundle") == 2
    assert "--trust-bundle go with --model nnunet:FOLDER or bundle:FOLDER" in capsys.readouterr().err


def test_study_takes_model_folders(toy_source: Path, synth_manifest: Path, tmp_path: Path) -> None:
    base = {"data": {"manifest": str(synth_manifest)}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**base, "models": [
        {"name": "given", "model": f"toy:{toy_source}", "options": {"depth": 1}}]}))
    cfg = load_study(path)
    assert cfg.models[0].entry(None) == {"name": "given", "model": f"toy:{toy_source.resolve()}",
                                         "options": {"depth": 1}, "defended": False}
    for model, message in [
        ({"model": f"toy:{toy_source}", "options": {"colour": 1}}, "toy models take"),
        ({"model": "monai.networks.nets:UNet"}, "expected a model folder of a registered kind"),
        ({"model": f"toy:{toy_source}", "set": {"a": 1}}, "training overrides need a config"),
        ({"model": f"toy:{tmp_path / 'nope'}"}, "toy folder does not exist"),
        ({"model": f"toy:{toy_source}", "checkpoint": str(synth_manifest)}, "give exactly one of"),
    ]:
        path.write_text(yaml.safe_dump({**base, "models": [{"name": "given", **model}]}))
        with pytest.raises(ConfigError, match=message):
            load_study(path)
