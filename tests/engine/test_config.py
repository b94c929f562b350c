"""The one run config: defaults, cells and their stable ids, and every bad input as a one-line error naming the
file — or, for a ``--set`` override, naming the override."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from volrob.engine.attack_spec import cell_id
from volrob.engine.cells import expand
from volrob.engine.config import load_run_config, parse_run_config
from volrob.errors import ConfigError


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    man, a, b = tmp_path / "manifest.json", tmp_path / "a.pt", tmp_path / "b.pt"
    man.write_text("{}")
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    return man, a, b


def _raw(man: Path, a: Path, b: Path, **extra: Any) -> dict[str, Any]:
    return {"manifest": str(man), "models": [{"name": "a", "checkpoint": str(a)}, {"name": "b", "checkpoint": str(b)}],
            "attacks": [{"attack": "fgsm", "eps": [4]},
                        {"attack": "pgd", "options": {"steps": 2}, "eps": [4, 8]},
                        {"attack": "vafa3d", "options": {"steps": 2}, "sweep": {"q_max": [20]}}], **extra}


def test_white_box_cells(files: tuple[Path, Path, Path]) -> None:
    cells = expand(parse_run_config(_raw(*files)))
    assert len(cells) == 2 * 4 and len({c.id for c in cells}) == 8
    assert all(c.targets == (c.source,) for c in cells)  # white-box: each source scored on itself
    assert cells[0].id.startswith("a__fgsm__eps4__") and cells[3].id.startswith("a__vafa3d__q_max20__")
    assert cells[2].options == {"steps": 2, "eps": 8} and cells[2].eps() == 8.0 and cells[3].eps() is None
    again = expand(parse_run_config({**_raw(*files), "attacks": _raw(*files)["attacks"][1:2]}))
    assert [c.id for c in again] == [cells[1].id, cells[2].id, cells[5].id, cells[6].id]  # ids never from order
    assert cell_id("m", "pgd", {"eps": 8, "steps": 2}, "eps", 8) == cell_id("m", "pgd", {"steps": 2, "eps": 8},
                                                                         "eps", 8)


def test_transfer_cells_and_ensembles(files: tuple[Path, Path, Path]) -> None:
    raw = _raw(*files, transfer=True)
    raw["models"].append({"name": "ens", "members": ["a", "b"]})
    cfg = parse_run_config(raw)
    assert cfg.source_names == ["a", "b", "ens"] and cfg.target_names == ["a", "b"]
    cells = expand(cfg)
    assert len(cells) == 3 * 4 and all(c.targets == ("a", "b") for c in cells)


def test_per_attack_window_makes_its_own_cells(files: tuple[Path, Path, Path]) -> None:
    raw = _raw(*files, window={"sw_batch_size": 4})
    raw["attacks"].append({"attack": "pgd", "options": {"steps": 2}, "eps": [8], "window": {"gradient": "tiles"}})
    cells = [c for c in expand(parse_run_config(raw)) if c.source == "a"]
    exact, tiles = cells[2], cells[4]
    assert exact.options == tiles.options and exact.id != tiles.id
    assert exact.window == {} and tiles.window == {"gradient": "tiles"}  # crafting only; the run window scores


@pytest.mark.parametrize(("change", "match"), [
    (lambda r: r.pop("models"), "missing key 'models'"),
    (lambda r: r.update(seeds=1), "unknown key"),
    (lambda r: r.update(seed="a"), "seed: expected an integer"),
    (lambda r: r.update(manifest="nowhere.json"), "manifest: file does not exist"),
    (lambda r: r.update(models=[]), "models: expected a non-empty list"),
    (lambda r: r["models"].append(dict(r["models"][0])), r"models\[2\].name: 'a' is used twice"),
    (lambda r: r["models"][0].update(name="a__b"), r"models\[0\].name"),
    (lambda r: r["models"][0].pop("checkpoint"), r"models\[0\]: give exactly one of checkpoint, model or members"),
    (lambda r: r["models"][0].update(members=["b"]), r"models\[0\]: give exactly one of"),
    (lambda r: r["models"][0].update(checkpoint="no.pt"), r"models\[0\].checkpoint: file does not exist"),
    (lambda r: r["models"][0].update(defended="yes"), r"models\[0\].defended: expected true/false"),
    (lambda r: r["models"][0].update(weights="w.pt"), r"models\[0\]: weights, model_args.* go with an external"),
    (lambda r: r["models"].append({"name": "e", "members": ["a", "zz"]}), r"models\[2\].members"),
    (lambda r: r["models"].append({"name": "e", "members": ["a", "a"]}), r"models\[2\].members"),
    (lambda r: r["models"].append({"name": "e", "members": ["a"]}), "sources: an ensemble is a transfer surrogate"),
    (lambda r: r.update(transfer=True, sources=["a", "c"]), "sources: expected distinct model names"),
    (lambda r: r.update(transfer=True, targets=[]), "targets: expected distinct model names"),
    (lambda r: r.update(targets=["a"]), "targets: a white-box run scores every source on itself"),
    (lambda r: (r["models"].append({"name": "e", "members": ["a"]}), r.update(transfer=True, targets=["e"])),
     "targets: an ensemble can craft"),
    (lambda r: r["attacks"][0].update(attack="pgdd"), r"attacks\[0\]: unknown attack 'pgdd'"),
    (lambda r: r["attacks"][0].update(options={"stepz": 2}), r"attacks\[0\]: .*unknown option"),
    (lambda r: r["attacks"][0].update(options={"seed": 2}), r"attacks\[0\].options: give the seed"),
    (lambda r: r["attacks"][0].update(sweep={"q_max": [1]}), r"attacks\[0\]: give eps or sweep"),
    (lambda r: r["attacks"][0].update(eps=[]), r"attacks\[0\].eps: must be a non-empty list"),
    (lambda r: r["attacks"][0].update(eps=[4, 4.0]), r"attacks\[0\]: budget values repeat"),
    (lambda r: r["attacks"][0].update(eps=[-1]), r"attacks\[0\]: .*eps"),
    (lambda r: r["attacks"].append({"attack": "fgsm", "eps": [4]}), "appear twice"),
    (lambda r: r["attacks"][1].update(window={"gradient": "tile"}), r"attacks\[1\].window: .*gradient must be one"),
    (lambda r: r["attacks"][1].update(window="tiles"), r"attacks\[1\].window: expected a mapping"),
    (lambda r: r.update(window={"overlap": 2}), "window: .*overlap"),
    (lambda r: r.update(empty_policy="nope"), "empty_policy"),
    (lambda r: r.update(region="XX"), "region must be one of"),
    (lambda r: r.update(success_drop=0), r"success_drop must be in \(0, 1\]"),
    (lambda r: r.update(sanity={"collapse_ratio": -1}), "sanity.collapse_ratio"),
    (lambda r: r.update(sanity={"region": "WT"}), "sanity: unknown key"),
    (lambda r: r.update(bands={"edges": [0, 1]}), "bands.edges: need at least two bands"),
    (lambda r: r.update(max_cases=0), "max_cases must be a positive integer"),
    (lambda r: r.update(cases=[]), "cases: expected a non-empty list"),
    (lambda r: r.update(cases=["x", "x"]), "cases: expected a non-empty list of distinct"),
    (lambda r: r.update(roi_crop="tumor"), "roi_crop must be one of"),
    (lambda r: r.update(roi_crop="tumour", transfer=True), "roi_crop: the ROI-crop protocol is white-box only"),
    (lambda r: r.update(reference="zz"), "reference: 'zz' is not one of the models"),
    (lambda r: r.update(universal={"source": "zz"}), "universal.source"),
    (lambda r: r.update(universal={"source": "a", "epochs": 0}), "universal.epochs must be >= 1"),
])
def test_bad_configs(files: tuple[Path, Path, Path], tmp_path: Path, change: Any, match: str) -> None:
    raw = _raw(*files)
    change(raw)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match) as info:
        load_run_config(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


@pytest.mark.parametrize(("override", "match"), [
    ("seeds=1", r"^--set seeds=1: unknown key 'seeds' in the top level; allowed: \["),
    ("sanity.tolerence=0.1", r"^--set sanity.tolerence=0.1: unknown key 'tolerence' in sanity"),
    ("models.name=x", r"^--set models.name=x: models is a list"),
    ("seed=abc", r"^--set seed=abc: seed: expected an integer"),
    ("max_cases=0", r"^--set max_cases=0: max_cases must be a positive integer"),
    ("=3", r"^--set expects key=value"),
])
def test_a_bad_override_names_the_override(files: tuple[Path, Path, Path], tmp_path: Path, override: str,
                                            match: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_raw(*files)))
    with pytest.raises(ConfigError, match=match) as info:
        load_run_config(path, [override])
    assert str(path) not in str(info.value)  # the file is fine: the override is named instead


def test_overrides_and_relative_paths(files: tuple[Path, Path, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_raw(Path("manifest.json"), Path("a.pt"), Path("b.pt"))))
    cfg = load_run_config(path, ["seed=3", "sanity.tolerance=0.1", "window.sw_batch_size=4", "cases=[x, y]"])
    assert cfg.seed == 3 and cfg.sanity.tolerance == 0.1 and cfg.window == {"sw_batch_size": 4}
    assert cfg.cases == ["x", "y"]
    assert cfg.manifest == str(files[0].resolve()) and cfg.models[0].checkpoint == str(files[1].resolve())
