"""Transfer runs on tiny models: crafted-once count (instrumented), provenance, kill-and-rerun, band analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from volrob import attacks
from volrob.transfer import engine
from volrob.transfer.config import parse_transfer_config
from volrob.transfer.engine import TRANSFER_COLUMNS, run_transfer, transfer_cells


def _raw(manifest: Path, a: Path, b: Path, **extra: Any) -> dict[str, Any]:
    return {"seed": 0, "split": "train", "manifest": str(manifest),
            "models": [{"name": "m1", "checkpoint": str(a)}, {"name": "m2", "checkpoint": str(b)}],
            "attacks": [{"attack": "fgsm", "eps": [4, 8]}, {"attack": "gaussian_noise", "eps": [8]}], **extra}


class _Counting:
    """Counts every attack run (the real attacks still do the work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        real = attacks.create

        def create(name: str, **cfg: Any) -> Any:
            atk = real(name, **cfg)
            run = atk.run

            def counted(predictor: Any, x: Any, target: Any) -> Any:
                self.calls.append((name, x.shape[0]))
                return run(predictor, x, target)

            atk.run = counted  # type: ignore[method-assign]
            return atk

        monkeypatch.setattr(engine.attacks, "create", create)


def test_each_perturbation_crafted_once_and_scored_on_every_target(
        tiny_checkpoint: Path, second_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_transfer_config(_raw(synth_manifest, tiny_checkpoint, second_checkpoint))
    counter = _Counting(monkeypatch)
    res = run_transfer(cfg, tmp_path / "out", progress=False)
    n_cases = res.rows["case"].nunique()
    assert n_cases >= 2
    expected = 2 * 3 * n_cases  # sources x (attack, budget) cells x cases
    assert len(counter.calls) == expected and len(res.crafted) == expected
    assert all(batch == 1 for _, batch in counter.calls)
    assert len(set(res.crafted)) == expected

    rows = pd.read_csv(tmp_path / "out" / "transfer.csv")
    assert list(rows.columns) == TRANSFER_COLUMNS
    assert len(rows) == expected * 2 * 3 * 3  # x targets x regions x metrics
    assert not rows.duplicated(["source", "target", "cell", "case", "region", "metric"]).any()
    assert (rows["white_box"] == (rows["source"] == rows["target"])).all()
    assert rows[["params", "seed", "source_sha256", "target_sha256"]].notna().all().all()
    shas = {"m1": rows[rows.target == "m1"]["target_sha256"].iloc[0],
            "m2": rows[rows.target == "m2"]["target_sha256"].iloc[0]}
    assert shas["m1"] != shas["m2"] and (rows["source_sha256"] == rows["source"].map(shas)).all()
    # the same crafted perturbation reaches both targets: identical perturbation statistics per (cell, case)
    assert (rows.groupby(["cell", "case"])[["linf_255", "ssim"]].nunique() == 1).all().all()
    assert rows["linf_255"].max() <= 8 + 1e-3
    # the clean column is the target's own clean score, the same whatever the source
    clean = rows.groupby(["target", "case", "region", "metric"])["clean"].nunique()
    assert (clean == 1).all()

    # rerun: nothing crafted, same table
    counter.calls.clear()
    again = run_transfer(cfg, tmp_path / "out", progress=False)
    assert counter.calls == [] and again.crafted == []
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "transfer.csv"), rows)


def test_kill_and_rerun_gives_the_uninterrupted_table(tiny_checkpoint: Path, second_checkpoint: Path,
                                                      synth_manifest: Path, tmp_path: Path) -> None:
    raw = _raw(synth_manifest, tiny_checkpoint, second_checkpoint)
    raw["attacks"] = [{"attack": "fgsm", "eps": [8]}]
    cfg = parse_transfer_config(raw)
    full = run_transfer(cfg, tmp_path / "full", progress=False)

    class Killed(Exception):
        pass

    seen: list[tuple[str, str, str]] = []

    def kill_after_three(source: str, cell: str, case: str) -> None:
        seen.append((source, cell, case))
        if len(seen) == 3:
            raise Killed

    with pytest.raises(Killed):
        run_transfer(cfg, tmp_path / "part", progress=False, on_crafted=kill_after_three)
    resumed = run_transfer(cfg, tmp_path / "part", progress=False)
    assert len(resumed.crafted) == len(full.crafted) - 3
    assert set(resumed.crafted).isdisjoint(seen)
    a, b = pd.read_csv(tmp_path / "full" / "transfer.csv"), pd.read_csv(tmp_path / "part" / "transfer.csv")
    cols = ["source", "target", "cell", "case", "region", "metric", "clean", "adversarial", "linf_255"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_bands_are_scored_and_partition_the_perturbation(tiny_checkpoint: Path, second_checkpoint: Path,
                                                         synth_manifest: Path, tmp_path: Path) -> None:
    raw = _raw(synth_manifest, tiny_checkpoint, second_checkpoint, bands={"edges": [0.0, 0.2, 1.0]},
               targets=["m2"], sources=["m1"], max_cases=2)
    raw["attacks"] = [{"attack": "fgsm", "eps": [8]}]
    cfg = parse_transfer_config(raw)
    res = run_transfer(cfg, tmp_path / "out", progress=False)
    bands = pd.read_csv(tmp_path / "out" / "bands.csv")
    assert set(bands["band"]) == {"0-0.2", "0.2-1"} and (bands["target"] == "m2").all()
    energy = bands.groupby(["case", "band"])["energy_fraction"].first().groupby("case").sum()
    assert energy.to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert res.rows["case"].nunique() == 2 and len(bands) == 2 * 2 * 3 * 3


def test_cells_and_ensemble_sources(tiny_checkpoint: Path, second_checkpoint: Path, synth_manifest: Path,
                                    tmp_path: Path) -> None:
    raw = _raw(synth_manifest, tiny_checkpoint, second_checkpoint,
               sources=["m1", "ens"], targets=["m1", "m2"])
    raw["models"].append({"name": "ens", "members": ["m2"]})
    raw["attacks"] = [{"attack": "fgsm", "eps": [8]}]
    cfg = parse_transfer_config(raw)
    cells = transfer_cells(cfg)
    assert [c.source for c in cells] == ["m1", "ens"] and len({c.id for c in cells}) == 2
    res = run_transfer(cfg, tmp_path / "out", progress=False)
    ens = res.rows[res.rows["source"] == "ens"]
    m2 = ens["source_sha256"].iloc[0]
    assert m2 == res.rows[res.rows.target == "m2"]["target_sha256"].iloc[0]
    assert not ens["white_box"].any()


def test_command_writes_matrices_heatmaps_and_sanity(tiny_checkpoint: Path, second_checkpoint: Path,
                                                     synth_manifest: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from volrob.cli.main import main

    raw = _raw(synth_manifest, tiny_checkpoint, second_checkpoint, sources=["m1"],
               bands={"edges": [0.0, 0.3, 1.0]})
    raw["attacks"] = [{"attack": "fgsm", "eps": [8]}, {"attack": "gaussian_noise", "eps": [8]}]
    cfg_path = tmp_path / "t.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    assert main(["transfer", str(cfg_path), "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "crafted now" in text and "rows: source, columns: target" in text
    matrices = pd.read_csv(out / "matrices.csv")
    assert len(matrices) == 2 * 2 and set(matrices["target"]) == {"m1", "m2"}
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["fgsm_eps_8.png", "gaussian_noise_eps_8.png"]
    sanity = __import__("json").loads((out / "sanity.json").read_text())
    assert sanity[0]["name"] == "blackbox_stronger_than_whitebox" and isinstance(sanity[0]["raised"], bool)
    assert len(list((out / "bands").iterdir())) == 2 and (out / "bands_summary.csv").is_file()

    # the document renderer reads the finished run
    import importlib.util

    spec = importlib.util.spec_from_file_location("transfer_doc", Path(__file__).parents[2] / "scripts" /
                                                  "transfer_doc.py")
    assert spec is not None and spec.loader is not None
    doc_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc_mod)
    doc, figs = tmp_path / "docs" / "t.md", tmp_path / "docs" / "fig"
    assert doc_mod.main(["--run", str(out), "--doc", str(doc), "--figures", str(figs)]) == 0
    capsys.readouterr()
    text = doc.read_text()
    assert text.count("| source \\ target |") == 2 * 3 and "![fgsm eps=8 heatmaps](fig/fgsm_eps_8.png)" in text
    assert {p.name for p in figs.iterdir()} == {"fgsm_eps_8.png", "gaussian_noise_eps_8.png", "spectrum.png"}
    assert "Which DCT bands carry the attack" in text
    assert doc_mod.main(["--run", str(tmp_path / "nothing"), "--doc", str(doc), "--figures", str(figs)]) == 2
    assert "not a finished transfer run" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    bad.write_text("manifest: x\n")
    assert main(["transfer", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(bad) in err
