"""Every shipped config in configs/ validates: training configs build their model, run configs load with the
engine's loader, study configs with the study loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from volrob import models
from volrob.data.labels import out_channels_for
from volrob.training.config import load_train_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_one_config_per_model() -> None:
    assert {p.stem for p in CONFIGS} >= set(models.available())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path: Path) -> None:
    cfg = load_train_config(path)
    net = models.create(cfg.model.name, in_channels=4, out_channels=out_channels_for(cfg.data.output_mode),
                        roi_size=cfg.inference.roi_size, preset=cfg.model.preset, **cfg.model.options)
    assert sum(p.numel() for p in net.parameters()) > 0
    assert cfg.model.name == path.stem


RUN_CONFIGS = sorted([*(CONFIGS[0].parent / "robustness").glob("*.yaml"),
                      *(CONFIGS[0].parent / "transfer").glob("*.yaml")])
STUDIES = sorted((CONFIGS[0].parent / "studies").glob("*.yaml"))


def _stand_ins(paths: list[str], root: Path) -> None:
    """Empty files at the paths a config names (relative to ``root``): the loaders only check that they exist."""
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("{}")


def test_the_run_configs_are_found() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in RUN_CONFIGS}
    assert {"robustness/demo", "robustness/quick", "robustness/attack_table", "robustness/defence_table",
            "transfer/demo"} <= names


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_run_configs_load(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from volrob.engine.cells import expand
    from volrob.engine.config import load_run_config

    raw = yaml.safe_load(path.read_text())
    _stand_ins([raw["manifest"], *(m["checkpoint"] for m in raw["models"] if "checkpoint" in m)], tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = load_run_config(path)
    cells = expand(cfg)
    assert cells and cfg.attacks
    assert cfg.transfer == (path.parent.name == "transfer")
    if cfg.transfer:  # every source scored on every target
        assert all(c.targets == tuple(cfg.target_names) for c in cells) and len(cfg.target_names) > 1
    else:
        assert all(c.targets == (c.source,) for c in cells)
    assert Path(cfg.manifest) == (tmp_path / raw["manifest"]).resolve()  # relative paths: the working directory


def test_quick_grid_is_small() -> None:
    """quick.yaml promises a few minutes on a 2-core CPU: two cases, at most 5 gradient steps, six cells."""
    import yaml

    raw = yaml.safe_load((CONFIGS[0].parent / "robustness" / "quick.yaml").read_text())
    assert raw["max_cases"] <= 2 and len(raw["models"]) == 1
    assert {a["attack"] for a in raw["attacks"]} == {"gaussian_noise", "fgsm", "pgd"}
    assert all(a.get("options", {}).get("steps", 1) <= 5 for a in raw["attacks"])
    assert sum(len(a["eps"]) for a in raw["attacks"]) == 6


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_configs_load(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from volrob.study.config import load_study

    raw = yaml.safe_load(path.read_text())
    (tmp_path / "configs").symlink_to(CONFIGS[0].parent)  # model configs are named relative to the repository root
    manifest = (raw.get("data") or {}).get("manifest")  # a study on the user's own data names its manifest
    _stand_ins([*([manifest] if manifest else []), *(m["checkpoint"] for m in raw["models"] if "checkpoint" in m)],
               tmp_path)
    monkeypatch.chdir(tmp_path)
    study = load_study(path)
    assert [m.name for m in study.models] == [m["name"] for m in raw["models"]]
    assert all(Path(m.config).resolve().is_relative_to(CONFIGS[0].parent.resolve()) for m in study.models if m.config)
