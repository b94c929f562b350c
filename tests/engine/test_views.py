"""Worst-case views (:mod:`volrob.engine.views`): one per attack cell, of the unit with the largest Dice drop, whose
Dice recomputed from the re-crafted (or stored) perturbation matches the table; arrays that are slices of the
prepared case, the slice rule, resume without rewriting, ``outputs.views: false``, and untouched inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from volrob.cli.main import main
from volrob.data.labels import regions_to_canonical
from volrob.engine.cases import CaseSource
from volrob.engine.cells import Cell
from volrob.engine.store import RunStore
from volrob.engine.views import changed_slices, display_channel, viewable, worst_case
from volrob.inference.segment import predict_regions
from volrob.report.slices import KINDS, PLANE_AXIS, PLANES, load_view, take
from volrob.sources import ModelSource

ATTACKS = [{"attack": "fgsm", "eps": [8]}, {"attack": "pgd", "options": {"steps": 2}, "eps": [8]}]


@dataclass
class Run:
    config: Path
    out: Path
    cells: list[str]
    inputs: dict[str, str]


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(command: str, config: Path, out: Path, *args: str) -> int:
    threads = torch.get_num_threads()
    try:
        return main([command, str(config), "-o", str(out), "--threads", "1", "--quiet", *args])
    finally:
        torch.set_num_threads(threads)


def _start(root: Path, command: str, manifest: Path, raw: dict[str, Any]) -> Run:
    inputs = _digests(manifest.parent)
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({"seed": 0, "split": "train", "max_cases": 3, "manifest": str(manifest),
                                      "attacks": ATTACKS[:1], **raw}))
    assert _run(command, config, root / "out") == 0
    cells = [c["cell"] for c in json.loads((root / "out" / "run.json").read_text())["cells"]]
    return Run(config, root / "out", cells, inputs)


@pytest.fixture(scope="module")
def grid(tiny_checkpoint: Path, synth_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A white-box grid of two attacks on three cases: no stored perturbations, so every view crafts again."""
    return _start(tmp_path_factory.mktemp("views_grid"), "robustness", synth_manifest,
                  {"models": [{"name": "tiny", "checkpoint": str(tiny_checkpoint)}], "attacks": ATTACKS})


@pytest.fixture(scope="module")
def matrix(tiny_checkpoint: Path, second_checkpoint: Path, synth_manifest: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A transfer run of two models on two cases: its perturbations are stored, and the views use them."""
    return _start(tmp_path_factory.mktemp("views_matrix"), "transfer", synth_manifest,
                  {"max_cases": 2, "models": [{"name": "tiny", "checkpoint": str(tiny_checkpoint)},
                                              {"name": "second", "checkpoint": str(second_checkpoint)}]})


def _record(run: Run, cell: str) -> dict[str, Any]:
    return json.loads((run.out / "views" / f"{cell}.json").read_text())


def _prepared(run: Run, checkpoint: Path, case: str) -> tuple[ModelSource, Any]:
    src = ModelSource.from_checkpoint(str(checkpoint))
    raw = yaml.safe_load(run.config.read_text())
    return src, CaseSource(raw["manifest"], raw["split"], src.modalities).prepare(case, src.preprocessing)


def test_one_view_per_cell_of_the_worst_case(grid: Run) -> None:
    assert len(grid.cells) == 2 and sorted(p.name for p in (grid.out / "views").iterdir()) == sorted(
        f"{c}.{ext}" for c in grid.cells for ext in ("json", "npz", "png"))
    results = pd.read_csv(grid.out / "results.csv")
    wt = results[(results.region == "WT") & (results.metric == "dice") & (results.model == "tiny")]
    assert wt["case"].nunique() == 3
    for cell in grid.cells:
        rows = wt[wt.cell == cell].reset_index(drop=True)
        worst = rows.loc[(rows["clean"] - rows["adversarial"]).idxmax()]  # first case on ties
        record = _record(grid, cell)
        assert record["case"] == worst["case"] and record["cell"] == cell and record["model"] == "tiny"
        assert record["attack"] in ("fgsm", "pgd") and record["budget_key"] == "eps" and record["budget"] == 8
        assert record["region"] == "WT" and record["channel"] == "flair" and record["channel_index"] == 3
        table = record["dice"]["table"]
        assert table == {"clean": pytest.approx(worst["clean"]), "adversarial": pytest.approx(worst["adversarial"])}
        # crafted again with the unit's seed and crafting predictor: the same adversarial Dice
        assert record["perturbation"] == "crafted again" and record["dice"]["match"] is True
        assert record["dice"]["recomputed"] == {k: pytest.approx(v, abs=1e-6) for k, v in table.items()}
        unit = json.loads((grid.out / "units" / cell / f"{record['case']}.json").read_text())
        assert record["params"] == unit["params"]
        assert record["linf_255"] == pytest.approx(unit["perturbation"]["linf_255"], rel=1e-5)
        assert record["spacing"] == [1.0, 1.0, 1.0] and record["axes"] == "RAS" and record["crop"] is None
        assert record["amplification"] * record["linf_255"] <= 255 and record["amplification"] >= 1
        assert (grid.out / "views" / f"{cell}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arrays_are_slices_of_the_case_and_its_perturbation(grid: Run, tiny_checkpoint: Path) -> None:
    record = _record(grid, grid.cells[1])
    _, prepared = _prepared(grid, tiny_checkpoint, record["case"])
    view = load_view(grid.out / "views" / f"{grid.cells[1]}.npz")
    flair = prepared.x[0, 3].numpy()
    label = prepared.label[0, 0].numpy()
    for plane in PLANES:
        arrays, index = view["planes"][plane], record["slices"][plane]
        assert set(arrays) == set(KINDS)
        assert all(arrays[k].dtype == np.float32 for k in KINDS[:3]) and all(arrays[k].dtype == np.uint8
                                                                            for k in KINDS[3:])
        np.testing.assert_array_equal(arrays["clean"], take(flair, plane, index))
        np.testing.assert_array_equal(arrays["reference"], take(label, plane, index))
        np.testing.assert_allclose(arrays["adversarial"], np.clip(arrays["clean"] + arrays["perturbation"], 0, 1),
                                   atol=1e-6)
        assert np.abs(arrays["perturbation"]).max() <= 8 / 255 + 1e-6
    assert view["case"] == record["case"] and view["dice"] == record["dice"]


@pytest.mark.usefixtures("one_thread")
def test_transfer_views_use_the_stored_perturbation_and_the_slice_rule(matrix: Run, tiny_checkpoint: Path) -> None:
    assert len(matrix.cells) == 2 and all((matrix.out / "views" / f"{c}.png").is_file() for c in matrix.cells)
    cell = next(c for c in matrix.cells if c.startswith("tiny__"))
    record = _record(matrix, cell)
    assert record["perturbation"] == "stored" and record["dice"]["match"] is True
    src, prepared = _prepared(matrix, tiny_checkpoint, record["case"])
    delta = RunStore(matrix.out).load_delta(cell, record["case"])
    assert delta is not None
    x_adv = (prepared.x + delta).clamp(0, 1)
    before = regions_to_canonical(predict_regions(src.predictor, prepared.x[0], torch.device("cpu"))).numpy()
    after = regions_to_canonical(predict_regions(src.predictor, x_adv[0], torch.device("cpu"))).numpy()
    changed = before != after
    view = load_view(matrix.out / "views" / f"{cell}.npz")
    assert changed.any() and record["slice_rule"] == "most changed voxels"
    for plane in PLANES:  # the slice with the most changed voxels per plane (the first on ties)
        counts = changed.sum(axis=tuple(a for a in range(3) if a != PLANE_AXIS[plane]))
        assert record["slices"][plane] == int(np.argmax(counts))
    for plane in PLANES:
        arrays, index = view["planes"][plane], record["slices"][plane]
        np.testing.assert_array_equal(arrays["perturbation"], take(delta[0, 3].numpy(), plane, index))
        np.testing.assert_array_equal(arrays["adversarial"], take(x_adv[0, 3].numpy(), plane, index))
        np.testing.assert_array_equal(arrays["clean_prediction"], take(before, plane, index))
        np.testing.assert_array_equal(arrays["adversarial_prediction"], take(after, plane, index))


def test_a_rerun_keeps_the_views_and_views_false_writes_none(grid: Run, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    shutil.copytree(grid.out, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "views").iterdir()}
    crafted: list[str] = []
    create = Cell.create_attack

    def create_attack(cell: Cell, seed: int) -> Any:
        atk = create(cell, seed)
        run = atk.run
        atk.run = lambda *args, **kwargs: crafted.append(cell.id) or run(*args, **kwargs)
        return atk

    monkeypatch.setattr(Cell, "create_attack", create_attack)
    assert _run("robustness", grid.config, out) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "views").iterdir()} == before and crafted == []
    shutil.rmtree(out / "views")
    assert _run("robustness", grid.config, out, "--set", "outputs.views=false") == 0
    assert not (out / "views").exists() and crafted == []
    assert _run("robustness", grid.config, out, "--set", "region=TC") == 0  # another region: views again
    assert sorted(p.suffix for p in (out / "views").iterdir()) == [".json", ".json", ".npz", ".npz", ".png", ".png"]
    assert all(_record(Run(grid.config, out, [], {}), c)["region"] == "TC" for c in grid.cells)


def test_inputs_untouched(grid: Run, matrix: Run, synth_manifest: Path) -> None:
    assert _digests(synth_manifest.parent) == grid.inputs == matrix.inputs


def _store(tmp_path: Path, drops: dict[str, tuple[float, float] | None]) -> RunStore:
    store = RunStore(tmp_path)
    for case, pair in drops.items():
        if pair is None:
            store.write(store.unit_path("c", case), {"params": {}, "status": "failed", "reason": "x"})
            continue
        rows = [{"region": "WT", "metric": "dice", "value": pair[1]}, {"region": "TC", "metric": "dice", "value": 0}]
        store.write(store.unit_path("c", case), {"params": {"case": case}, "status": "ok",
                                                 "scores": {"m": {"rows": rows}}})
        store.write(store.clean_path("m", case), {"params": {}, "status": "ok",
                                                  "rows": [{"region": "WT", "metric": "dice", "value": pair[0]}]})
    return store


def test_worst_case_rule(tmp_path: Path) -> None:
    cell = Cell("c", "m", ("m",), "fgsm", {}, "eps", 8)
    store = _store(tmp_path, {"a": (0.9, 0.8), "b": (1.0, 0.5), "c": None, "d": (0.75, 0.25), "e": (0.5, 0.5)})
    choice = worst_case(store, cell, ["a", "b", "c", "d", "e"], "WT")
    assert choice is not None and choice.case == "b" and (choice.clean, choice.adversarial) == (1.0, 0.5)  # first tie
    assert worst_case(store, cell, ["d", "b"], "WT").case == "d"  # type: ignore[union-attr]
    assert worst_case(store, cell, ["c"], "WT") is None and worst_case(store, cell, ["a"], "ET") is None
    assert viewable(cell, set()) and not viewable(cell, {"m"})
    assert not viewable(Cell("c", "m", ("other",), "fgsm", {}, "eps", 8), set())


def test_slice_rule_and_channel() -> None:
    before = np.zeros((6, 7, 8), np.uint8)
    after = before.copy()
    reference = np.zeros_like(before)
    reference[1:4, 2, 5] = 2
    assert changed_slices(before, after, reference) == ({"axial": 5, "coronal": 2, "sagittal": 2},
                                                        "reference tumour centre")
    assert changed_slices(before, after, np.zeros_like(before))[0] == {"axial": 4, "coronal": 3, "sagittal": 3}
    after[4, 1:5, 6] = 1
    after[0, 0, 0] = 3
    assert changed_slices(before, after, reference) == ({"axial": 6, "coronal": 0, "sagittal": 4},
                                                        "most changed voxels")
    assert display_channel(["t1", "FLAIR"]) == 1 and display_channel(["t1", "t2"]) == 0


@pytest.mark.usefixtures("one_thread")
def test_roi_crop_views_show_the_attacked_box(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    run = _start(tmp_path, "attack", synth_manifest, {"split": "val", "roi_crop": "tumour",
                                                      "models": [{"name": "tiny", "checkpoint": str(tiny_checkpoint)}]})
    record = _record(run, run.cells[0])
    assert record["perturbation"] == "crafted again" and record["dice"]["match"] is True
    _, prepared = _prepared(run, tiny_checkpoint, record["case"])
    box = tuple(slice(a, b) for a, b in record["crop"])
    assert [b - a for a, b in record["crop"]] == [32, 32, 32] and prepared.x.shape[2:] != (32, 32, 32)
    view = load_view(run.out / "views" / f"{run.cells[0]}.npz")
    for plane in PLANES:
        np.testing.assert_array_equal(view["planes"][plane]["clean"],
                                      take(prepared.x[0, 3][box].numpy(), plane, record["slices"][plane]))
