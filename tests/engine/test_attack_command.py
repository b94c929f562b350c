"""``volrob attack``: tidy clean-vs-adversarial rows, adversarial volumes on the source grid, perturbation sizes
against an oracle, provenance, external models, per-case seeds, and bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from volrob.checkpoint import load_checkpoint
from volrob.cli.main import main
from volrob.data.manifest import load_manifest
from volrob.engine.cases import CaseSource
from volrob.engine.seeds import case_seed
from volrob.engine.tables import RESULT_COLUMNS
from volrob.evaluation.degradation import degradation
from volrob.evaluation.perturbation import perturbation_stats
from volrob.external import load_module
from volrob.inference.segment import to_source_grid


def _attack(manifest: Path, out: Path, *args: str, checkpoint: Path | None = None) -> int:
    model = ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
    return main(["attack", *model, "--manifest", str(manifest), "-o", str(out), "--threads", "1", "--quiet", *args])


@pytest.fixture(scope="module")
def pgd_run(tiny_checkpoint: Path, synth_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """PGD (eps 8, two steps) on the validation split, volumes written."""
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("attack") / "pgd"
    try:
        assert _attack(synth_manifest, out, "--split", "val", "--attack", "pgd", "--eps", "8", "--steps", "2",
                       checkpoint=tiny_checkpoint) == 0
        yield out
    finally:
        torch.set_num_threads(threads)


def test_degradation_directions() -> None:
    assert degradation("dice", 0.8, 0.2) == pytest.approx((0.6, 0.75))
    assert degradation("nsd", 0.5, 0.5) == (0.0, 0.0)
    assert degradation("hd95", 2.0, 10.0) == pytest.approx((8.0, 4.0))
    assert degradation("hd95", 0.0, 3.0) == (3.0, 0.0)  # nothing relative to a perfect 0 mm


def test_case_seed_depends_on_seed_and_id_only() -> None:
    assert case_seed(0, "a") == case_seed(0, "a")
    assert len({case_seed(0, "a"), case_seed(1, "a"), case_seed(0, "b")}) == 3
    assert 0 <= case_seed(123, "BraTS2021_00001") < 2**31


def test_perturbation_stats_by_hand() -> None:
    x = torch.zeros(1, 2, 8, 8, 8)
    x[:, :, 2:6, 2:6, 2:6] = 0.5
    adv = x.clone()
    adv[0, 0, 3, 3, 3] += 4 / 255
    s = perturbation_stats(x, adv)[0]
    assert s["linf_255"] == pytest.approx(4.0, rel=1e-5) and s["l2_255"] == pytest.approx(4.0, rel=1e-5)
    mse = (4 / 255) ** 2 / (2 * 64)  # one changed voxel among the brain voxels of both channels
    assert s["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    assert 0.9 < s["ssim"] < 1.0
    assert perturbation_stats(x, x)[0] == {"linf_255": 0.0, "l2_255": 0.0, "ssim": pytest.approx(1.0), "psnr": 100.0}


def test_result_rows(pgd_run: Path, synth_manifest: Path) -> None:
    df = pd.read_csv(pgd_run / "results.csv")
    assert list(df.columns) == RESULT_COLUMNS
    val = load_manifest(synth_manifest).split("val")
    assert len(df) == len(val) * 9 and df[["clean", "adversarial"]].notna().all().all()
    assert set(df["region"]) == {"TC", "WT", "ET"} and set(df["metric"]) == {"dice", "hd95_brats", "nsd"}  # brats2021
    assert (df["linf_255"] <= 8 + 1e-3).all() and (df["linf_255"] > 0).all() and (df["eps"] == 8).all()
    assert df["ssim"].between(0, 1).all() and json.loads(df["threat"].iloc[0])["eps"] == 8
    assert json.loads(df["params"].iloc[0])["steps"] == 2 and df["white_box"].all()
    assert (df["model"] == df["source"]).all() and (df["model_sha256"] == df["source_sha256"]).all()
    assert (df["seed"] == df["case"].map(lambda c: case_seed(0, c))).all()
    for metric, g in df.groupby("metric"):
        drop = g["clean"] - g["adversarial"] if metric != "hd95_brats" else g["adversarial"] - g["clean"]
        np.testing.assert_allclose(g["degradation"], drop)
    summary = pd.read_csv(pgd_run / "summary.csv")
    assert set(summary["region"]) == {"TC", "WT", "ET"} and (summary["n"] == len(val)).all()
    run = json.loads((pgd_run / "run.json").read_text())
    assert run["command"] == "attack" and run["status"] == "finished"
    assert run["config"]["attacks"][0]["attack"] == "pgd"
    assert run["config"]["attacks"][0]["options"] == {"eps": 8.0, "steps": 2}


def test_volumes_on_the_source_grid_and_perturbation_oracle(pgd_run: Path, tiny_checkpoint: Path,
                                                            synth_manifest: Path) -> None:
    """The written volumes are float32 NIfTI with the source's affine and shape, a sidecar records the attack, and
    their difference to the clean input gives the table's L-inf, L2 and PSNR (computed here independently)."""
    df = pd.read_csv(pgd_run / "results.csv")
    ckpt = load_checkpoint(tiny_checkpoint)
    cases = CaseSource(synth_manifest, "val", ckpt.modalities)
    case = cases.cases[0]
    cell = df["cell"].iloc[0]
    folder = pgd_run / "adversarial" / cell / case.id
    arrays = []
    for mod in ckpt.modalities:
        adv = nib.load(folder / f"{case.id}_{mod}.nii.gz")
        src = nib.load(cases.manifest.resolve(case.images[mod].path))
        assert adv.shape == src.shape and adv.get_data_dtype() == np.float32
        np.testing.assert_allclose(adv.affine, src.affine)
        arr = np.asarray(adv.dataobj)
        assert arr.min() >= 0 and arr.max() <= 1 + 1e-6
        assert (arr[np.asarray(src.dataobj) == 0] == 0).all()  # background stays 0 (brain mask)
        arrays.append(arr)
    sidecar = json.loads((folder / f"{case.id}_attack.json").read_text())
    assert sidecar["case"] == case.id and sidecar["cell"] == cell and "attack space" in sidecar["values"]
    assert sidecar["record"]["threat"]["eps"] == 8 and sidecar["record"]["seed"] == case_seed(0, case.id)
    p = cases.prepare(case.id, ckpt.preprocessing)
    clean = to_source_grid(p.x[0], p.pre, nearest=False)
    delta = np.stack(arrays).astype(np.float64) - clean
    brain = (clean != 0).any(0)  # PSNR's voxels: non-zero in some channel of the clean input
    row = df[df["case"] == case.id].iloc[0]
    assert row["linf_255"] == pytest.approx(np.abs(delta).max() * 255, rel=1e-5)
    assert row["l2_255"] == pytest.approx(np.linalg.norm(delta) * 255, rel=1e-4)
    assert row["psnr"] == pytest.approx(10 * np.log10(1 / (delta[:, brain] ** 2).mean()), rel=1e-4)


def test_force_starts_over_with_the_same_numbers(pgd_run: Path, tiny_checkpoint: Path, synth_manifest: Path,
                                                 tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "again"
    shutil.copytree(pgd_run, out)
    assert _attack(synth_manifest, out, "--split", "val", "--attack", "pgd", "--eps", "8", "--steps", "2",
                   "--no-volumes", "--force", checkpoint=tiny_checkpoint) == 0
    assert not (out / "adversarial").exists()  # --force removed what the earlier run wrote
    cols = ["case", "region", "metric", "clean", "adversarial", "linf_255", "l2_255", "seed"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv")[cols], pd.read_csv(pgd_run / "results.csv")[cols])


@pytest.mark.parametrize(("args", "word"), [
    (["--attack", "pgdd"], "unknown attack"),
    (["--attack", "pgd", "--eps", "-1"], "eps"),
    (["--attack", "fgsm", "--param", "seed=3"], "--param seed"),
    (["--attack", "pgd", "--eps", "8", "--param", "bogus=1"], "bogus"),
    (["--attack", "fgsm", "--split", "nope"], "nope"),
    (["--attack", "fgsm", "--cases", "BraTS2021_99999"], "BraTS2021_99999"),
    (["--attack", "fgsm", "--weights", "w.pt"], "--weights and --model-arg go with --model"),
])
def test_bad_input_is_one_line_and_writes_nothing(args: list[str], word: str, tiny_checkpoint: Path,
                                                  synth_manifest: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    assert _attack(synth_manifest, tmp_path / "x", *args, checkpoint=tiny_checkpoint) == 2
    err = capsys.readouterr().err.strip()
    assert word in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


@pytest.mark.parametrize("holds", ["foreign", "other_command"])
def test_a_folder_of_something_else_is_never_overwritten(holds: str, tiny_checkpoint: Path, synth_manifest: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         one_thread: None) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    files = {"results.csv": "previous table\n"}
    files |= {"run.json": json.dumps({"command": "robustness"})} if holds == "other_command" else {}
    for name, text in files.items():
        (out / name).write_text(text)
    assert _attack(synth_manifest, out, "--split", "val", "--attack", "fgsm", checkpoint=tiny_checkpoint) == 2
    err = capsys.readouterr().err.strip()
    assert str(out) in err and "--force" in err and len(err.splitlines()) == 1
    assert ("already holds a robustness run" in err) == (holds == "other_command")
    assert {p.name: p.read_text() for p in out.iterdir()} == files


def test_vafa_has_no_voxel_budget_and_says_so(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    assert _attack(synth_manifest, tmp_path / "v", "--split", "val", "--attack", "vafa3d", "--param", "steps=2",
                   "--param", "block=8", "--no-volumes", checkpoint=tiny_checkpoint) == 0
    out = capsys.readouterr().out
    assert "1 attack cell(s) on 1 case(s)" in out and "WT" in out
    df = pd.read_csv(tmp_path / "v" / "results.csv")
    assert json.loads(df["threat"].iloc[0])["eps"] is None and df["eps"].isna().all()
    assert (df["linf_255"] > 0).all()  # it does move the input: the achieved size is in the table
    assert not (tmp_path / "v" / "adversarial").exists()


def test_external_model_factory(synth_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                one_thread: None) -> None:
    spec = "monai.networks.nets:UNet"
    args = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "channels": [4, 8], "strides": [2]}
    torch.manual_seed(0)
    net, _ = load_module(spec, **args)
    weights = tmp_path / "w.pt"
    torch.save(net.state_dict(), weights)
    margs = [x for k, v in args.items() for x in ("--model-arg", f"{k}={v}")]
    code = main(["attack", "--model", spec, "--weights", str(weights), *margs, "--roi", "32,32,32",
                 "--manifest", str(synth_manifest), "--split", "val", "--attack", "fgsm", "--eps", "4",
                 "-o", str(tmp_path / "out"), "--no-volumes", "--threads", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert (df["model"] == "UNet").all() and len(df) == 9
    assert (df["model_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()).all()
    assert (df["linf_255"] <= 4 + 1e-3).all() and (df["linf_255"] > 0).all()
    model = json.loads((tmp_path / "out" / "run.json").read_text())["config"]["models"][0]
    assert model["model"] == spec and model["roi_size"] == [32, 32, 32] and model["model_args"]["strides"] == [2]


def test_per_case_seeds_ignore_case_order_and_selection(tiny_checkpoint: Path, synth_manifest: Path,
                                                        tmp_path: Path, one_thread: None) -> None:
    """A case's attack seed, and so its perturbation and scores, is the same whatever other cases are attacked
    and in whatever order."""
    train = [c.id for c in load_manifest(synth_manifest).split("train")]
    first, second = train[0], train[1]
    runs = {"both": f"{first},{second}", "reversed": f"{second},{first}", "alone": second}
    tables = {}
    for name, ids in runs.items():
        assert _attack(synth_manifest, tmp_path / name, "--split", "train", "--cases", ids, "--attack",
                       "gaussian_noise", "--eps", "8", "--no-volumes", checkpoint=tiny_checkpoint) == 0
        tables[name] = pd.read_csv(tmp_path / name / "results.csv").set_index(["case", "region", "metric"])
    assert list(dict.fromkeys(tables["reversed"].index.get_level_values("case"))) == [second, first]
    cols = ["seed", "adversarial", "linf_255", "l2_255", "ssim", "psnr"]
    for name in ("reversed", "alone"):
        pd.testing.assert_frame_equal(tables[name].loc[[second], cols], tables["both"].loc[[second], cols])
    pd.testing.assert_frame_equal(tables["reversed"].loc[[first], cols], tables["both"].loc[[first], cols])
    both = tables["both"].reset_index()
    assert both.groupby("case")["seed"].first().to_dict() == {c: case_seed(0, c) for c in (first, second)}
    assert both.groupby("case")["l2_255"].first().nunique() == 2  # two cases, two different noise draws
