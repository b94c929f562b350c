"""Transfer config validation: every bad input is a one-line error naming the file; defaults for sources/targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from volrob.errors import ConfigError
from volrob.transfer.config import load_transfer_config, parse_transfer_config
from volrob.transfer.engine import transfer_cells


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    man, a, b = tmp_path / "manifest.json", tmp_path / "a.pt", tmp_path / "b.pt"
    man.write_text("{}")
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    return man, a, b


def _raw(man: Path, a: Path, b: Path) -> dict[str, Any]:
    return {"manifest": str(man), "models": [{"name": "a", "checkpoint": str(a)}, {"name": "b", "checkpoint": str(b)}],
            "attacks": [{"attack": "pgd", "options": {"steps": 2}, "eps": [4, 8]},
                        {"attack": "vafa3d", "options": {"steps": 2}, "sweep": {"q_max": [20]}}]}


def test_defaults_and_cells(files: tuple[Path, Path, Path]) -> None:
    raw = _raw(*files)
    raw["models"].append({"name": "ens", "members": ["a", "b"]})
    cfg = parse_transfer_config(raw)
    assert cfg.source_names == ["a", "b", "ens"] and cfg.target_names == ["a", "b"]
    cells = transfer_cells(cfg)
    assert len(cells) == 3 * 3 and len({c.id for c in cells}) == 9
    assert cells[0].id.startswith("a__pgd__eps4__") and cells[2].id.startswith("a__vafa3d__q_max20__")
    assert cells[1].options == {"steps": 2, "eps": 8}


@pytest.mark.parametrize(("change", "match"), [
    (lambda r: r.pop("attacks"), "missing key 'attacks'"),
    (lambda r: r.update(models=[]), "models: expected a non-empty list"),
    (lambda r: r["models"].append(dict(r["models"][0])), r"models\[2\].name: 'a' is used twice"),
    (lambda r: r["models"][0].update(name="a__b"), r"models\[0\].name"),
    (lambda r: r["models"][0].pop("checkpoint"), r"models\[0\]: give either checkpoint or members"),
    (lambda r: r["models"][0].update(members=["b"]), r"models\[0\]: give either checkpoint or members"),
    (lambda r: r["models"][0].update(checkpoint="no.pt"), r"models\[0\].checkpoint: file does not exist"),
    (lambda r: r["models"].append({"name": "e", "members": ["a", "zz"]}), r"models\[2\].members"),
    (lambda r: r["models"].append({"name": "e", "members": ["a", "a"]}), r"models\[2\].members"),
    (lambda r: r.update(sources=["a", "c"]), "sources: expected distinct model names"),
    (lambda r: r.update(targets=[]), "targets: expected distinct model names"),
    (lambda r: (r["models"].append({"name": "e", "members": ["a"]}), r.update(targets=["e"])),
     "targets: an ensemble can be a source only"),
    (lambda r: r["attacks"][0].update(attack="pgdd"), r"attacks\[0\]: unknown attack 'pgdd'"),
    (lambda r: r["attacks"][0].update(eps=[-1]), r"attacks\[0\]: .*eps"),
    (lambda r: r["attacks"].append(dict(r["attacks"][0])), "appear twice"),
    (lambda r: r.update(region="XX"), "region must be TC, WT or ET"),
    (lambda r: r.update(success_drop=0), r"success_drop must be in \(0, 1\]"),
    (lambda r: r.update(tolerance=-1), "tolerance must be >= 0"),
    (lambda r: r.update(bands={"edges": [0, 1]}), "bands.edges: need at least two bands"),
    (lambda r: r.update(bands={"edges": [0, 0.6, 0.5, 1]}), "bands.edges: .*strictly increasing"),
    (lambda r: r.update(empty_policy="nope"), "empty_policy"),
    (lambda r: r.update(max_cases=0), "max_cases must be a positive integer"),
    (lambda r: r.update(manifest="nowhere.json"), "manifest: file does not exist"),
    (lambda r: r.update(seeds=1), "unknown key"),
])
def test_bad_configs(files: tuple[Path, Path, Path], tmp_path: Path, change: Any, match: str) -> None:
    raw = _raw(*files)
    change(raw)
    path = tmp_path / "transfer.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match) as info:
        transfer_cells(load_transfer_config(path))
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))
