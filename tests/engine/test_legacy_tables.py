"""The engine redesign changed no number: the scenarios of the old entry points (evaluate, attack, a small grid, a
small transfer matrix with bands and an ensemble, the query curve, the universal perturbation) run through today's
commands and give the tables the old code wrote (tests/data/legacy/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.checkpoints import jittered_copy

from volrob.cli.main import main

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
CHECKPOINT = LEGACY / "tiny_unet.pt"
# The golden tables hold volrob's original metric set. The synthetic data is brats2021, whose default is now the
# official BraTS definitions (dice, hd95_brats, nsd), so every scenario pins the original set explicitly.
LEGACY_METRICS = ["dice", "hd95", "nsd"]
PIN = ("--metrics", ",".join(LEGACY_METRICS))


@pytest.fixture(scope="module")
def jittered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The legacy transfer scenario's second model: every floating weight scaled by ``1 + 0.05 N(0, 1)``."""
    return jittered_copy(CHECKPOINT, tmp_path_factory.mktemp("legacy") / "second.pt")


def run(*args: str) -> None:
    assert main([*args, *PIN, "--threads", "1", "--quiet"]) == 0


def same(old: pd.DataFrame, new: pd.DataFrame, keys: list[str], columns: list[tuple[str, str]]) -> None:
    """Every old row has exactly one new row with the same keys, and the compared columns are equal."""
    merged = old.merge(new, on=keys, suffixes=("_old", "_new"), validate="one_to_one")
    assert len(merged) == len(old) == len(new)
    for a, b in columns:
        np.testing.assert_allclose(merged[a].to_numpy(float), merged[b].to_numpy(float), rtol=0, atol=1e-9,
                                   err_msg=f"{a} vs {b}")


SCORES = [("clean_old", "clean_new"), ("adversarial_old", "adversarial_new")]
PERT = [("linf_255_old", "linf_255_new"), ("l2_255_old", "l2_255_new"), ("ssim_old", "ssim_new")]


@pytest.mark.usefixtures("one_thread")
def test_evaluate_and_attack(synth_manifest: Path, tmp_path: Path) -> None:
    run("evaluate", "--checkpoint", str(CHECKPOINT), "--manifest", str(synth_manifest), "--split", "train",
        "-o", str(tmp_path / "ev"), "--no-predictions")
    old = pd.read_csv(LEGACY / "evaluate.csv").rename(columns={"value": "clean"})
    same(old, pd.read_csv(tmp_path / "ev" / "results.csv"), ["case", "region", "metric"],
         [("clean_old", "clean_new")])
    run("attack", "--checkpoint", str(CHECKPOINT), "--manifest", str(synth_manifest), "--split", "train",
        "--attack", "pgd", "--eps", "8", "--steps", "3", "-o", str(tmp_path / "at"), "--no-volumes")
    same(pd.read_csv(LEGACY / "attack.csv"), pd.read_csv(tmp_path / "at" / "results.csv"),
         ["case", "region", "metric"], [*SCORES, *PERT, ("psnr_old", "psnr_new")])


@pytest.mark.usefixtures("one_thread")
def test_grid(synth_manifest: Path, tmp_path: Path) -> None:
    cfg = {"seed": 0, "split": "train", "manifest": str(synth_manifest),
           "models": [{"name": "tiny", "checkpoint": str(CHECKPOINT)}],
           "attacks": [{"attack": "fgsm", "eps": [4]}, {"attack": "pgd", "options": {"steps": 2}, "eps": [4, 8]},
                       {"attack": "gaussian_noise", "eps": [8]},
                       {"attack": "vafa3d", "options": {"steps": 2}, "sweep": {"q_max": [10]}}],
           "outputs": {"views": False}}  # tables only (views: tests/engine/test_views.py)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(cfg))
    run("robustness", str(tmp_path / "grid.yaml"), "-o", str(tmp_path / "grid"))
    new = pd.read_csv(tmp_path / "grid" / "results.csv")
    same(pd.read_csv(LEGACY / "grid.csv"), new, ["cell", "case", "region", "metric"],
         [*SCORES, *PERT, ("eps_old", "eps_new"), ("budget_old", "budget_new")])


@pytest.mark.usefixtures("one_thread")
def test_transfer_with_bands_and_ensemble(synth_manifest: Path, jittered: Path, tmp_path: Path) -> None:
    cfg = {"seed": 0, "split": "train", "manifest": str(synth_manifest), "max_cases": 3,
           "models": [{"name": "m1", "checkpoint": str(CHECKPOINT)}, {"name": "m2", "checkpoint": str(jittered)},
                      {"name": "ens", "members": ["m1", "m2"]}],
           "attacks": [{"attack": "fgsm", "eps": [4]}, {"attack": "pgd", "options": {"steps": 2}, "eps": [8]}],
           "bands": {"edges": [0.0, 0.15, 1.0]}, "outputs": {"views": False}}
    (tmp_path / "transfer.yaml").write_text(yaml.safe_dump(cfg))
    run("transfer", str(tmp_path / "transfer.yaml"), "-o", str(tmp_path / "tr"))
    keys = ["cell", "model", "case", "region", "metric"]
    same(pd.read_csv(LEGACY / "transfer.csv").rename(columns={"target": "model"}),
         pd.read_csv(tmp_path / "tr" / "results.csv"), keys, [*SCORES, *PERT])
    same(pd.read_csv(LEGACY / "bands.csv").rename(columns={"target": "model"}),
         pd.read_csv(tmp_path / "tr" / "bands.csv"), [*keys, "band"],
         [*SCORES, ("energy_fraction_old", "energy_fraction_new")])


@pytest.mark.usefixtures("one_thread")
def test_query_curve(synth_manifest: Path, tmp_path: Path) -> None:
    run("query", "--checkpoint", str(CHECKPOINT), "--manifest", str(synth_manifest), "--split", "train", "--eps", "8",
        "--queries", "20", "--checkpoints", "5", "10", "-o", str(tmp_path / "q"))
    old = pd.read_csv(LEGACY / "queries.csv")
    new = pd.read_csv(tmp_path / "q" / "queries.csv")
    # every row scores the input the attack held at 'selected_queries': the old row of that count, the same numbers
    merged = new.merge(old, left_on=["case", "selected_queries", "region", "metric"],
                       right_on=["case", "queries", "region", "metric"], validate="many_to_one")
    assert len(merged) == len(new) == len(old)
    np.testing.assert_array_equal(merged["adversarial"], merged["value"])
    np.testing.assert_array_equal(merged["linf_255_x"], merged["linf_255_y"])
    assert (new["selected_queries"] <= new["queries"]).all()
    assert (new.loc[new.queries == 0, "selected_queries"] == 0).all()
    wt = new[(new.region == "WT") & (new.metric == "dice")].pivot(index="case", columns="queries", values="adversarial")
    assert (wt.diff(axis=1).iloc[:, 1:] <= 0).all().all()  # per case the curve never rises


@pytest.mark.usefixtures("one_thread")
def test_universal(synth_manifest: Path, jittered: Path, tmp_path: Path) -> None:
    run("universal", "--source", str(CHECKPOINT), "--source-name", "unet", "--target", f"m2={jittered}",
        "--manifest", str(synth_manifest), "--train-split", "train", "--eval-split", "val", "--eps", "8",
        "--epochs", "1", "-o", str(tmp_path / "u"))
    old = pd.read_csv(LEGACY / "universal.csv").rename(columns={"target": "model"})
    old["attack"] = old["perturbation"].map({"universal": "universal", "noise": "sign_noise"})
    same(old, pd.read_csv(tmp_path / "u" / "results.csv"), ["attack", "model", "case", "region", "metric"], SCORES)
