"""Every shipped config in configs/ validates and builds its model."""

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


@pytest.mark.parametrize("path", sorted((CONFIGS[0].parent / "robustness").glob("*.yaml")), ids=lambda p: p.stem)
def test_robustness_configs_validate(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from volrob.robustness.grid import expand_cells, load_grid_config

    raw = yaml.safe_load(path.read_text())
    for rel in [raw["manifest"], *(m["checkpoint"] for m in raw["models"])]:  # the files the grid names
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    monkeypatch.chdir(tmp_path)
    cfg = load_grid_config(path)
    assert len(expand_cells(cfg)) > 0
