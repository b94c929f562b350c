"""scripts/defence_table.py: verdicts agree with the raw rows (pass and FAIL), on hand-made rows and on a tiny grid
of three checkpoints with defence records."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from script_loader import load_script

from volrob.checkpoint import load_checkpoint, save_checkpoint
from volrob.cli.main import main
from volrob.evaluation.compare import compare_models


def _script() -> ModuleType:
    return load_script("defence_table")


def _rows(gain: float, clean_loss: float) -> pd.DataFrame:
    """Reference ``ref``, ``rob`` (pgd_at) and ``vf`` (vaft): rob/vf adversarial WT Dice = ref + ``gain`` per case,
    clean WT Dice = ref - ``clean_loss``."""
    rng = np.random.default_rng(0)
    base = {(s, c): (float(rng.uniform(0.6, 0.9)), float(rng.uniform(0.1, 0.4)))
            for s in ("pgd", "vafa3d") for c in range(5)}
    rows = []
    for model, shift in (("ref", 0.0), ("rob", 1.0), ("vf", 1.0)):
        for attack, key, budget in (("pgd", "eps", 4.0), ("vafa3d", "q_max", 20.0)):
            for case in range(5):
                clean, adv = base[(attack, case)]
                for region in ("TC", "WT", "ET"):
                    rows.append({"model": model, "cell": f"{model}__{attack}__x__00", "attack": attack,
                                 "budget_key": key, "budget": budget, "eps": budget if key == "eps" else np.nan,
                                 "case": f"c{case}", "region": region, "metric": "dice",
                                 "clean": clean - shift * clean_loss * (1 + 0.1 * case),
                                 "adversarial": adv + shift * gain * (1 + 0.1 * case)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("gain", "clean_loss", "passed_a", "passed_b"),
                         [(0.1, 0.01, True, True), (0.1, 0.2, False, True), (-0.05, 0.0, False, False)])
def test_verdicts_on_hand_made_rows(gain: float, clean_loss: float, passed_a: bool, passed_b: bool) -> None:
    script = _script()
    rows = _rows(gain, clean_loss)
    table = compare_models(rows, {"ref": "none", "rob": "pgd_at", "vf": "vaft"}, "ref", n_boot=200)
    (a,) = script.check_pgd_at(table, eps=4, max_clean_loss=0.05)
    (b,) = script.check_vaft(table)
    assert (a["passed"], b["passed"]) == (passed_a, passed_b)
    wt = rows[rows.region == "WT"]
    rob = wt[(wt.model == "rob") & (wt.attack == "pgd")].set_index("case")
    ref = wt[(wt.model == "ref") & (wt.attack == "pgd")].set_index("case")
    assert a["margin"] == pytest.approx((rob.adversarial - ref.adversarial).mean())
    assert a["clean_loss"] == pytest.approx(ref.clean.mean() - rob.clean.mean())
    assert a["margin_ci"][0] <= a["margin"] <= a["margin_ci"][1] and 0 <= a["p_one_sided"] <= 1
    assert script.check_pgd_at(table, eps=8)[0]["passed"] is None
    strict = script.check_pgd_at(table, eps=4, max_clean_loss=0.05, alpha=a["p_one_sided"])[0]  # p must be below
    assert strict["passed"] is False
    checks = [a, b]
    tables = {"vf": compare_models(rows, {"ref": "none", "rob": "pgd_at", "vf": "vaft"}, "vf", n_boot=50)}
    script.against_control(checks, tables, {"rob": "vf"})
    vf = wt[(wt.model == "vf") & (wt.attack == "pgd")].set_index("case")
    assert a["control"]["model"] == "vf" and "Against the control `vf`" in a["text"]
    assert a["control"]["margin"] == pytest.approx((rob.adversarial - vf.adversarial).mean())
    assert "control" not in b and "No control (`vf`) has the same schedule" in b["text"]  # vf has no control
    no_vaft = compare_models(rows, {"ref": "none", "rob": "pgd_at", "vf": "trades"}, "ref", n_boot=50)
    assert script.check_vaft(no_vaft)[0]["passed"] is None


def _provenance(epochs: int, init_sha: str = "a", device: str = "cpu", seed: int = 0) -> dict:
    return {"seed": seed, "manifest_sha256": "m", "init_from": {"path": f"/{device}/x.pt", "sha256": init_sha},
            "config": {"train": {"epochs": epochs, "lr": 0.001, "device": device, "amp": device == "cuda",
                                 "init_from": f"/{device}/x.pt"}}}


def test_controls_are_matched_by_schedule() -> None:
    script = _script()
    key = script.schedule_key
    assert key(_provenance(10)) == key(_provenance(10, device="cuda"))  # where it ran does not matter
    for other in (_provenance(20), _provenance(10, init_sha="b"), _provenance(10, seed=1), {}):
        assert key(other) != key(_provenance(10))
    schedules = {"ft10": key(_provenance(10)), "ft20": key(_provenance(20)), "pgd10": key(_provenance(10)),
                 "pgd20": key(_provenance(20)), "vaft30": key(_provenance(30)), "ref": key({})}
    matched = script.matched_controls(schedules, ["ft10", "ft20"])
    assert matched == {"pgd10": "ft10", "pgd20": "ft20"}  # no control for vaft30 or the reference
    assert script.matched_controls(schedules, []) == {}


def _variant(src: Path, dst: Path, defence: str | None, scale: float) -> Path:
    ckpt = load_checkpoint(src)
    gen = torch.Generator().manual_seed(int(scale * 1000))
    ckpt.state_dict = {k: v + scale * torch.randn(v.shape, generator=gen) * v.std() if v.is_floating_point()
                       and v.numel() > 1 else v for k, v in ckpt.state_dict.items()}
    if defence is not None:
        ckpt.provenance["defence"] = {"name": defence, "params": {"eps": 4}}
    return save_checkpoint(ckpt, dst)


def test_script_on_tiny_grid(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path, one_thread: None,
                             capsys: pytest.CaptureFixture[str]) -> None:
    script = _script()
    models = [{"name": "ref", "checkpoint": str(tiny_checkpoint)},
              {"name": "rob", "checkpoint": str(_variant(tiny_checkpoint, tmp_path / "rob.pt", "pgd_at", 0.3)),
               "defended": True},
              {"name": "vf", "checkpoint": str(_variant(tiny_checkpoint, tmp_path / "vf.pt", "vaft", 0.6)),
               "defended": True}]
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump({
        "seed": 0, "split": "test", "manifest": str(synth_manifest), "models": models,
        "attacks": [{"attack": "pgd", "options": {"steps": 1}, "eps": [4]},
                    {"attack": "vafa3d", "options": {"steps": 1, "block": 8}, "sweep": {"q_max": [30]}}]}))
    out, doc = tmp_path / "out", tmp_path / "docs" / "d.md"
    assert script.main(["--config", str(cfg), "-o", str(out), "--doc", str(doc), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = {c["check"]: c for c in report["checks"]}
    results = pd.read_csv(out / "results.csv")
    wt = results[(results.metric == "dice") & (results.region == "WT")]

    def per_case(model: str, attack: str, column: str) -> pd.Series:
        return wt[(wt.model == model) & (wt.attack == attack)].set_index("case")[column].sort_index()

    a, b = checks["pgd_at_beats_reference"], checks["vaft_beats_reference"]
    margin_a = (per_case("rob", "pgd", "adversarial") - per_case("ref", "pgd", "adversarial")).mean()
    loss_a = per_case("ref", "pgd", "clean").mean() - per_case("rob", "pgd", "clean").mean()
    assert a["margin"] == pytest.approx(margin_a) and a["clean_loss"] == pytest.approx(loss_a)
    assert a["passed"] == bool(margin_a > 0 and loss_a <= 0.05 and a["p_one_sided"] < 0.05)
    margin_b = (per_case("vf", "vafa3d", "adversarial") - per_case("ref", "vafa3d", "adversarial")).mean()
    assert b["margin"] == pytest.approx(margin_b)
    assert b["passed"] == bool(margin_b > 0 and b["p_one_sided"] < 0.05)

    assert (out / "comparison.csv").is_file() and (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert doc.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    text = doc.read_text()
    assert "defence_table.py" in text and "defence `pgd_at` (eps=4)" in text and "defence `none`" in text
    assert text.count("\n| ") == 2 + 3 + 3 * 2 and "## Checks" in text and "(d.png)" in text
    verdict = {True: "**pass**", False: "**FAIL**"}
    table = pd.read_csv(out / "comparison.csv")
    assert set(table.model) == {"ref", "rob", "vf"} and set(table.defence) == {"none", "pgd_at", "vaft"}

    # volrob robustness on the same folder reuses every cell and prints the comparison
    assert main(["robustness", str(cfg), "-o", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "0 unit(s) computed now" in printed and "comparison against 'ref'" in printed
    assert printed.count(" pgd_at ") == 2 and printed.count(" vaft ") == 2  # one WT row per setting
    assert f"pgd_at_beats_reference: {verdict[a['passed']]}" in text
    assert f"vaft_beats_reference: {verdict[b['passed']]}" in text


def _two_model_config(tmp_path: Path, defended: list[bool], reference: str | None) -> Path:
    (tmp_path / "m.json").write_text("{}")
    (tmp_path / "c.pt").write_bytes(b"x")
    raw: dict = {"manifest": str(tmp_path / "m.json"), "attacks": [{"attack": "fgsm", "eps": [4]}],
                 "models": [{"name": n, "checkpoint": str(tmp_path / "c.pt"), "defended": d}
                            for n, d in zip("ab", defended, strict=True)]}
    if reference is not None:
        raw["reference"] = reference
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_grid_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from volrob.engine.config import load_run_config
    from volrob.errors import ConfigError
    from volrob.evaluation.compare import resolve_reference

    with pytest.raises(ConfigError, match=r"reference: 'zz' is not one of the models \['a', 'b'\]") as info:
        load_run_config(_two_model_config(tmp_path, [False, True], "zz"))
    assert "\n" not in str(info.value)
    assert load_run_config(_two_model_config(tmp_path, [False, True], "b")).reference == "b"
    for defended in ([False, False], [True, True]):  # ambiguous: the grid loads (and compares nothing) ...
        cfg = load_run_config(_two_model_config(tmp_path, defended, None))
        assert resolve_reference(cfg.models, cfg.reference) is None
        # ... but the defence table needs a reference: one line, exit 2, nothing written
        code = _script().main(["--config", str(tmp_path / "g.yaml"), "-o", str(tmp_path / "o"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "reference: name the reference model" in err
        assert not (tmp_path / "o").exists()


def test_single_model_is_an_error(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump({"manifest": str(synth_manifest), "models": [{"name": "a", "checkpoint":
                                   str(tiny_checkpoint)}], "attacks": [{"attack": "fgsm", "eps": [4]}]}))
    assert _script().main(["--config", str(cfg), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "two or more models" in err and not (tmp_path / "o").exists()


def test_unknown_control_is_one_line_exit_2(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump({
        "seed": 0, "split": "test", "manifest": str(synth_manifest), "reference": "ref",
        "models": [{"name": "ref", "checkpoint": str(tiny_checkpoint)},
                   {"name": "rob", "checkpoint": str(tiny_checkpoint), "defended": True}],
        "attacks": [{"attack": "pgd", "options": {"steps": 1}, "eps": [4]}]}))
    code = _script().main(["--config", str(cfg), "-o", str(tmp_path / "out"), "--control", "nope", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--control: 'nope'" in err
    assert not (tmp_path / "out").exists()
