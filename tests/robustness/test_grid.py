"""Robustness grid: config validation, cell expansion and ids, resume, parameter mismatch, combined tables, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from volrob.cli import robustness_cmd
from volrob.errors import ConfigError
from volrob.robustness import grid as grid_mod
from volrob.robustness.attack_run import RESULT_COLUMNS, attack_manifest
from volrob.robustness.grid import SUMMARY_COLUMNS, cell_id, expand_cells, load_grid_config, parse_config, run_grid


def _raw(manifest: Path, checkpoint: Path, **extra: Any) -> dict[str, Any]:
    return {"seed": 0, "split": "val", "manifest": str(manifest),
            "models": [{"name": "tiny", "checkpoint": str(checkpoint)}],
            "attacks": [{"attack": "fgsm", "eps": [4]},
                        {"attack": "pgd", "options": {"steps": 2}, "eps": [8]},
                        {"attack": "gaussian_noise", "eps": [8]}], **extra}


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    man, ckpt = tmp_path / "manifest.json", tmp_path / "model.pt"
    man.write_text("{}")
    ckpt.write_bytes(b"x")
    return man, ckpt


def test_expansion_and_stable_ids(files: tuple[Path, Path]) -> None:
    raw = _raw(*files)
    raw["models"].append({"name": "other", "checkpoint": str(files[1]), "defended": True})
    raw["attacks"][0]["eps"] = [4, 8]
    raw["attacks"].append({"attack": "vafa3d", "options": {"steps": 2}, "sweep": {"q_max": [10, 20]}})
    raw["attacks"].append({"attack": "pgd", "options": {"steps": 3}, "eps": [8]})
    cells = expand_cells(parse_config(raw))
    assert len(cells) == 2 * 7 and len({c.id for c in cells}) == 14
    ids = [c.id for c in cells if c.model.name == "tiny"]
    assert ids[0].startswith("tiny__fgsm__eps4__") and ids[4].startswith("tiny__vafa3d__q_max10__")
    assert cells[2].options == {"steps": 2, "eps": 8}
    pgd = [i for i in ids if i.startswith("tiny__pgd__eps8__")]
    assert len(pgd) == 2  # same readable part, different options: the hash separates them
    again = [c.id for c in expand_cells(parse_config(_raw(*files)))]
    assert again == [ids[0], ids[2], ids[3]]  # stable across parses and independent of the other cells
    assert cell_id("m", "pgd", {"eps": 8, "steps": 2}, "eps", 8) == cell_id("m", "pgd", {"steps": 2, "eps": 8},
                                                                         "eps", 8)
    assert cell_id("m", "fgsm", {"eps": 0.5}, "eps", 0.5).startswith("m__fgsm__eps0.5__")
    assert cell_id("m", "x", {}, None, None).count("__") == 2


def test_per_attack_window_makes_its_own_cells(files: tuple[Path, Path]) -> None:
    raw = _raw(*files, window={"sw_batch_size": 4})
    raw["attacks"].append({"attack": "pgd", "options": {"steps": 2}, "eps": [8], "window": {"gradient": "tiles"}})
    cells = expand_cells(parse_config(raw))
    exact, tiles = cells[1], cells[3]
    assert exact.options == tiles.options and exact.id != tiles.id
    assert exact.window == {"sw_batch_size": 4} and tiles.window == {"sw_batch_size": 4, "gradient": "tiles"}
    assert exact.id == expand_cells(parse_config(_raw(*files)))[1].id  # ids without a per-attack window unchanged
    table = grid_mod.cell_table(parse_config(raw), cells)
    assert json.loads(table["window"].iloc[3]) == tiles.window


@pytest.mark.parametrize(("change", "match"), [
    (lambda r: r.pop("models"), "missing key 'models'"),
    (lambda r: r.update(seeds=1), "unknown key"),
    (lambda r: r.update(seed="a"), "seed: expected an integer"),
    (lambda r: r.update(manifest="nowhere.json"), "manifest: file does not exist"),
    (lambda r: r.update(models=[]), "models: expected a non-empty list"),
    (lambda r: r["models"].append(dict(r["models"][0])), r"models\[1\].name: 'tiny' is used twice"),
    (lambda r: r["models"][0].update(name="a__b"), r"models\[0\].name"),
    (lambda r: r["models"][0].pop("checkpoint"), r"models\[0\]: missing key"),
    (lambda r: r["models"][0].update(checkpoint="no.pt"), r"models\[0\].checkpoint: file does not exist"),
    (lambda r: r["models"][0].update(defended="yes"), r"models\[0\].defended: expected true/false"),
    (lambda r: r["attacks"][0].update(attack="pgdd"), r"attacks\[0\]: unknown attack 'pgdd'"),
    (lambda r: r["attacks"][0].update(options={"stepz": 2}), r"attacks\[0\]: .*unknown option"),
    (lambda r: r["attacks"][0].update(options={"seed": 2}), r"attacks\[0\].options: give the seed"),
    (lambda r: r["attacks"][0].update(sweep={"q_max": [1]}), r"attacks\[0\]: give eps or sweep"),
    (lambda r: r["attacks"][0].update(eps=[]), r"attacks\[0\].eps: must be a non-empty list"),
    (lambda r: r["attacks"][0].update(eps=[4, 4.0]), r"attacks\[0\]: budget values repeat"),
    (lambda r: r["attacks"][0].update(eps=[-1]), r"attacks\[0\]: .*eps"),
    (lambda r: r["attacks"][2].update(eps=None, sweep={"a": [1], "b": [2]}), r"attacks\[2\].sweep: expected exactly"),
    (lambda r: r["attacks"][1].update(eps=None, sweep={"steps": 3}), r"attacks\[1\].sweep.steps"),
    (lambda r: r["attacks"].append({"attack": "fgsm", "eps": [4]}), "appear twice"),
    (lambda r: r.update(empty_policy="nope"), "empty_policy"),
    (lambda r: r["attacks"][1].update(window={"gradient": "tile"}), r"attacks\[1\].window: .*gradient must be one of"),
    (lambda r: r["attacks"][1].update(window={"roi": 3}), r"attacks\[1\].window: .*roi"),
    (lambda r: r["attacks"][1].update(window="tiles"), r"attacks\[1\].window: expected a mapping"),
    (lambda r: r.update(sanity={"collapse_ratio": -1}), "sanity.collapse_ratio"),
])
def test_bad_configs(files: tuple[Path, Path], tmp_path: Path, change: Any, match: str) -> None:
    raw = _raw(*files)
    change(raw)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match) as info:
        expand_cells(load_grid_config(path))
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


def test_overrides_and_relative_paths(files: tuple[Path, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    raw = _raw(Path("manifest.json"), Path("model.pt"))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_grid_config(path, ["seed=3", "sanity.tolerance=0.1"])
    assert cfg.seed == 3 and cfg.sanity.tolerance == 0.1
    assert cfg.manifest == str(files[0].resolve()) and cfg.models[0].checkpoint == str(files[1].resolve())


def test_grid_run_resume_and_mismatch(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(Path(args[2]).name)
        return attack_manifest(*args, **kwargs)

    monkeypatch.setattr(grid_mod, "attack_manifest", counting)
    cfg_path = tmp_path / "grid.yaml"
    cfg_path.write_text(yaml.safe_dump(_raw(synth_manifest, tiny_checkpoint)))
    out = tmp_path / "out"
    cfg = load_grid_config(cfg_path)
    res = run_grid(cfg, out, progress=False, run_cell=counting)
    ids = [c.id for c in expand_cells(cfg)]
    assert calls == ids and res.computed == ids

    results = pd.read_csv(out / "results.csv")
    assert res.comparison is None and not (out / "comparison.csv").exists()  # one model: no comparison
    assert list(results.columns[:2]) == ["model_label", "cell"]
    assert set(RESULT_COLUMNS) <= set(results.columns) and {"budget_key", "budget", "eps"} <= set(results.columns)
    assert set(results["cell"]) == set(ids) and (results["model_label"] == "tiny").all()
    assert sorted(results["eps"].unique()) == [4.0, 8.0] and len(ids) == 3
    for cid in ids:  # each cell's rows are exactly its own results.csv
        own = pd.read_csv(out / "cells" / cid / "results.csv")
        assert (results["cell"] == cid).sum() == len(own)
        assert not (out / "cells" / cid / "adversarial").exists()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS and len(summary) == len(ids) * 3
    wt = results[(results.metric == "dice") & (results.region == "WT") & (results.cell == ids[0])]
    row = summary[(summary.cell == ids[0]) & (summary.region == "WT")].iloc[0]
    assert row.adversarial_dice == pytest.approx(wt["adversarial"].mean())
    grid_json = json.loads((out / "grid.json").read_text())
    assert [c["id"] for c in grid_json["cells"]] == ids and grid_json["config"]["split"] == "val"
    sanity = json.loads((out / "sanity.json").read_text())
    assert [f["name"] for f in sanity] == [f.name for f in res.flags] and len(sanity) == 5

    # resume: only the cell whose results.csv is gone is recomputed; the others are untouched
    mtimes = {c: (out / "cells" / c / "results.csv").stat().st_mtime_ns for c in ids}
    (out / "cells" / ids[1] / "results.csv").unlink()
    calls.clear()
    again = run_grid(cfg, out, progress=False, run_cell=counting)
    assert calls == [ids[1]] and again.computed == [ids[1]]
    assert all((out / "cells" / c / "results.csv").stat().st_mtime_ns == mtimes[c] for c in ids if c != ids[1])
    cols = ["cell", "case", "region", "metric", "clean", "adversarial"]
    pd.testing.assert_frame_equal(again.results[cols], res.results[cols])  # same seed, same numbers
    # an unfinished cell (results.csv written, run.json not yet) is recomputed, not reused
    kept = (out / "cells" / ids[2] / "run.json").read_text()
    (out / "cells" / ids[2] / "run.json").write_text("{not json")
    assert grid_mod.cell_state(cfg, expand_cells(cfg)[2], out / "cells" / ids[2], "", "") == "todo"
    (out / "cells" / ids[2] / "run.json").unlink()
    assert grid_mod.cell_state(cfg, expand_cells(cfg)[2], out / "cells" / ids[2], "", "") == "todo"
    (out / "cells" / ids[2] / "run.json").write_text(json.dumps(json.loads((out / "cells" / ids[0] / "run.json")
                                                                           .read_text())))

    # a finished cell with other stored parameters (here another cell's run.json) is an error naming it
    calls.clear()
    with pytest.raises(ConfigError, match=f"cell {ids[2]} was computed with other parameters "
                                          r"\(attack, attack_options\)"):
        run_grid(cfg, out, progress=False, run_cell=counting)
    assert calls == []
    (out / "cells" / ids[2] / "run.json").write_text(kept)

    # the command line: flags printed
    import argparse

    parser = argparse.ArgumentParser()
    robustness_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["robustness", str(cfg_path), "-o", str(out), "--quiet"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "3 cell(s), 0 computed now" in text
    assert "SANITY FLAG" in text or "sanity checks: all clear" in text
    args = parser.parse_args(["robustness", str(cfg_path), "-o", str(out), "--quiet", "--fail-on-flags"])
    assert args.func(args) == (1 if any(f.raised for f in res.flags) else 0)


def test_cell_window_reaches_the_attack_run(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    raw = _raw(synth_manifest, tiny_checkpoint)
    raw["attacks"] = [{"attack": "pgd", "options": {"steps": 2}, "eps": [8], "window": {"gradient": "tiles"}}]
    seen: list[Any] = []

    class Stop(Exception):
        pass

    def record(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["window"])
        raise Stop

    with pytest.raises(Stop):
        run_grid(parse_config(raw), tmp_path / "out", progress=False, run_cell=record)
    assert seen == [{"gradient": "tiles"}]
