"""Universal perturbations: tiling, application inside the threat model, learning, the experiment and the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from volrob.attacks.losses import resolve_loss
from volrob.attacks.threat import ThreatModel
from volrob.data.labels import canonical_to_regions
from volrob.errors import ConfigError
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.models import create as create_model
from volrob.universal import apply_universal, learn_universal, tile_delta
from volrob.universal.perturbation import shifted_delta
from volrob.universal.run import UNIVERSAL_COLUMNS, sign_noise, universal_experiment

ROI = (16, 16, 16)


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here runs with one intra-op thread (see the root conftest)."""


def _unet() -> Predictor:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create_model("unet", in_channels=4, out_channels=3, roi_size=ROI, preset="tiny")
    return Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=SlidingWindowConfig(roi_size=ROI)).eval()


def _bn_predictor() -> Predictor:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = nn.Sequential(nn.Conv3d(4, 6, 3, padding=1), nn.BatchNorm3d(6), nn.ReLU(), nn.InstanceNorm3d(
            6, affine=True, track_running_stats=True), nn.Conv3d(6, 3, 1))
    return Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=SlidingWindowConfig(roi_size=ROI))


def _cases(n: int = 2, shape: tuple[int, int, int] = (19, 18, 17), seed: int = 0) -> tuple[list, list]:
    gen = torch.Generator().manual_seed(seed)
    vols, tgts = [], []
    for _ in range(n):
        x = torch.rand(4, *shape, generator=gen) * 0.9 + 0.05
        x[:, :2] = 0.0  # background slab
        lab = torch.randint(0, 4, (1, *shape), generator=gen)
        lab[:, :2] = 0
        vols.append(x)
        tgts.append(canonical_to_regions(lab[None])[0].float())
    return vols, tgts


# --- tiling -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7, 9, 5), (2, 3, 11), (3, 4, 5), (1, 1, 1)])
def test_tile_delta_matches_numpy_tile(shape: tuple[int, int, int]) -> None:
    delta = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    reps = (1, *(-(-s // r) + 1 for s, r in zip(shape, delta.shape[1:], strict=True)))
    want = np.tile(delta.numpy(), reps)[:, :shape[0], :shape[1], :shape[2]]
    got = tile_delta(delta, shape)
    assert tuple(got.shape) == (2, *shape)
    np.testing.assert_array_equal(got.numpy(), want)


def test_tile_delta_by_hand() -> None:
    delta = torch.arange(2.0).view(1, 2, 1, 1)
    assert tile_delta(delta, (5, 1, 2))[0, :, 0, 0].tolist() == [0, 1, 0, 1, 0]
    assert tile_delta(delta, (5, 1, 2))[0, :, 0, 1].tolist() == [0, 1, 0, 1, 0]


def test_shifted_delta_is_the_tiled_crop() -> None:
    delta = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    tiled = tile_delta(delta, (20, 20, 20))
    for o in [(0, 0, 0), (1, 2, 3), (5, 7, 11), (3, 4, 5)]:
        crop = tiled[:, o[0]:o[0] + 3, o[1]:o[1] + 4, o[2]:o[2] + 5]
        torch.testing.assert_close(shifted_delta(delta, o), crop, rtol=0, atol=0)


@pytest.mark.parametrize("delta,shape", [
    (torch.zeros(3, 3, 3), (4, 4, 4)), (torch.zeros(1, 3, 3, 3, dtype=torch.long), (4, 4, 4)),
    (torch.zeros(1, 3, 3, 3), (4, 4)), (torch.zeros(1, 3, 3, 3), (4, 0, 4)), ([0.0], (4, 4, 4)),
])
def test_tile_delta_bad_input(delta: object, shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="delta|shape"):
        tile_delta(delta, shape)  # type: ignore[arg-type]


# --- applying -----------------------------------------------------------------------------------------------------

def _batch() -> torch.Tensor:
    x = torch.rand(3, 2, 6, 7, 5, generator=torch.Generator().manual_seed(2))
    x[:, :, :2] = 0.0
    x[0, 0, 4, 4, 4] = 1.0  # at the top of the range
    return x


def test_apply_universal_threat_properties() -> None:
    x = _batch()
    before = x.clone()
    delta = torch.randn(2, 4, 3, 2, generator=torch.Generator().manual_seed(3)) * 0.2  # well outside the ball
    threat = ThreatModel(eps=8)
    adv = apply_universal(x, delta, threat)
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    background = (x == 0).all(dim=1, keepdim=True).expand_as(x)
    assert torch.equal(adv[background], x[background])
    # independent oracle: numpy tiling, mask, clip to the ball, clip to the range
    tiled = np.tile(delta.numpy(), (1, 2, 4, 3))[:, :6, :7, :5]
    mask = (x.numpy() != 0).any(axis=1, keepdims=True)
    want = np.clip(x.numpy() + np.clip(tiled[None] * mask, -8 / 255, 8 / 255), 0, 1)
    np.testing.assert_allclose(adv.numpy(), want, atol=1e-6)


def test_apply_universal_batch_consistent_and_mask_none() -> None:
    x, delta = _batch(), torch.full((2, 4, 3, 2), 0.01)
    threat = ThreatModel(eps=4)
    whole = apply_universal(x, delta, threat)
    alone = torch.cat([apply_universal(x[i:i + 1], delta, threat) for i in range(3)])
    torch.testing.assert_close(whole, alone, rtol=0, atol=0)
    free = apply_universal(x, delta, ThreatModel(eps=4, mask="none"))
    torch.testing.assert_close(free[:, :, :2], torch.full_like(free[:, :, :2], 0.01))


@pytest.mark.parametrize("kwargs,match", [
    ({"threat": ThreatModel(eps=8, norm="l2")}, "L-inf"), ({"threat": 8}, "L-inf"),
    ({"delta": torch.zeros(3, 4, 3, 2)}, "channels"), ({"x": torch.zeros(2, 6, 7, 5)}, "x must be"),
    ({"threat": ThreatModel(eps=(1.0, 2.0))}, "per-sample"),
])
def test_apply_universal_bad_input(kwargs: dict, match: str) -> None:
    args = {"x": _batch(), "delta": torch.zeros(2, 4, 3, 2), "threat": ThreatModel(eps=8), **kwargs}
    with pytest.raises(ConfigError, match=match):
        apply_universal(args["x"], args["delta"], args["threat"])


# --- learning -----------------------------------------------------------------------------------------------------

def _mean_loss(predictor: Predictor, vols: list, tgts: list, delta: torch.Tensor | None) -> float:
    loss = resolve_loss("auto", "regions")
    total = 0.0
    with torch.no_grad():
        for v, t in zip(vols, tgts, strict=True):
            x = v[None] if delta is None else apply_universal(v[None], delta, ThreatModel(eps=8))
            total += float(loss(predictor(x), t[None]))
    return total / len(vols)


def test_learning_is_deterministic_within_budget_and_raises_the_loss() -> None:
    predictor, (vols, tgts) = _unet(), _cases()
    opts = {"eps": 8, "roi": ROI, "epochs": 3, "crops_per_case": 2, "step": 2, "seed": 5}
    delta, record = learn_universal(predictor, vols, tgts, **opts)
    again, _ = learn_universal(predictor, vols, tgts, **opts)
    assert torch.equal(delta, again)
    assert tuple(delta.shape) == (4, *ROI)
    assert delta.abs().max() <= 8 / 255 + 1e-7
    assert record["seed"] == 5 and len(record["epoch_loss"]) == 3
    assert record["params"]["roi"] == list(ROI) and record["params"]["eps"] == 8
    assert record["delta_linf_255"] == pytest.approx(float(delta.abs().max()) * 255)
    # measured on whole volumes with the sliding window (not the crops it was learned on)
    assert _mean_loss(predictor, vols, tgts, delta) > _mean_loss(predictor, vols, tgts, None)


def test_learning_pads_volumes_smaller_than_the_roi() -> None:
    vols, tgts = _cases(n=1, shape=(12, 17, 16))
    delta, _ = learn_universal(_unet(), vols, tgts, eps=2, roi=ROI, epochs=1, crops_per_case=1, step=1, seed=0)
    assert tuple(delta.shape) == (4, *ROI) and delta.abs().max() <= 2 / 255 + 1e-7


def test_learning_leaves_the_network_alone() -> None:
    predictor = _bn_predictor().train()
    state = {k: v.clone() for k, v in predictor.state_dict().items()}
    vols, tgts = _cases()
    learn_universal(predictor, vols, tgts, eps=8, epochs=1, crops_per_case=1, step=1, seed=0)
    assert predictor.training and predictor.network[1].training
    assert all(p.grad is None for p in predictor.parameters())
    for k, v in predictor.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("kwargs,match", [
    ({"eps": -1}, "eps"), ({"eps": [1, 2]}, "one number"), ({"epochs": 0}, "epochs"),
    ({"crops_per_case": 0}, "crops_per_case"), ({"step": 0}, "step"), ({"seed": 1.5}, "seed"),
    ({"roi": (16, 16)}, "roi"), ({"roi": (16, 0, 16)}, "roi"), ({"loss": "ce"}, "loss"),
])
def test_learning_bad_options(kwargs: dict, match: str) -> None:
    vols, tgts = _cases(n=1)
    opts = {"eps": 8, "epochs": 1, "crops_per_case": 1, "step": 1, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        learn_universal(_unet(), vols, tgts, **opts)


@pytest.mark.parametrize("which", ["empty", "count", "target_shape", "channels", "ndim"])
def test_learning_bad_cases(which: str) -> None:
    vols, tgts = _cases(n=2)
    if which == "empty":
        vols, tgts = [], []
    elif which == "count":
        tgts = tgts[:1]
    elif which == "target_shape":
        tgts[1] = tgts[1][:1]
    elif which == "channels":
        vols[1] = vols[1][:3]
    else:
        vols[0] = vols[0][0]
    with pytest.raises(ConfigError, match="learn_universal"):
        learn_universal(_unet(), vols, tgts, eps=8, epochs=1, crops_per_case=1, step=1, seed=0)


def test_sign_noise_is_seeded_and_at_the_budget() -> None:
    x, threat = _batch(), ThreatModel(eps=4)
    a, b = sign_noise(x, threat, 7), sign_noise(x, threat, 7)
    assert torch.equal(a, b)
    inside = (x != 0).any(dim=1, keepdim=True).expand_as(x) & (x > 4 / 255) & (x < 1 - 4 / 255)
    torch.testing.assert_close((a - x).abs()[inside], torch.full_like(x[inside], 4 / 255))
    background = (x == 0).all(dim=1, keepdim=True).expand_as(x)
    assert (a[background] == 0).all()


# --- the experiment and the command -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def experiment(tiny_checkpoint: Path, synth_manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("universal")
    res = universal_experiment(tiny_checkpoint, {"copy": tiny_checkpoint}, synth_manifest, eps=8, epochs=1,
                               crops_per_case=1, step=2, seed=0, out_dir=out, device="cpu")
    return res


def test_experiment_writes_the_promised_table(experiment, synth_manifest: Path) -> None:
    from volrob.data.manifest import load_manifest

    out = experiment.out_dir
    df = pd.read_csv(out / "universal.csv")
    assert list(df.columns) == UNIVERSAL_COLUMNS
    n_eval = len(load_manifest(synth_manifest).split("test"))
    targets = sorted(df.target.unique())
    assert len(targets) == 2 and "copy" in targets
    assert len(df) == 2 * n_eval * 3 * 3 * 2
    assert df.groupby(["target", "perturbation", "case", "region", "metric"]).size().eq(1).all()
    assert set(df.perturbation) == {"universal", "noise"} and set(df.region) == {"TC", "WT", "ET"}
    assert set(df.metric) == {"dice", "hd95", "nsd"} and (df.eps == 8).all() and (df.seed == 0).all()
    assert df.source_sha256.notna().all() and (df.source_sha256 == df.target_sha256).all()
    # the copy of the source scores exactly as the source
    a = df[df.target == "copy"].drop(columns="target").reset_index(drop=True)
    b = df[df.target != "copy"].drop(columns="target").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    dice = df[df.metric == "dice"]
    np.testing.assert_allclose(dice.degradation, dice.clean - dice.adversarial)
    with np.load(out / "universal_delta.npz") as z:
        assert np.abs(z["delta"]).max() <= 8 / 255 + 1e-7 and list(z["roi"]) == list(z["delta"].shape[1:])
    assert (out / "universal_record.json").is_file() and (out / "universal.json").is_file()


def test_experiment_refuses_overwrite_and_foreign_preprocessing(experiment, tiny_checkpoint: Path,
                                                                synth_manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="universal.csv"):
        universal_experiment(tiny_checkpoint, {}, synth_manifest, epochs=1, out_dir=experiment.out_dir)
    from volrob.checkpoint import load_checkpoint, save_checkpoint
    from volrob.data.preprocess import PreprocessConfig

    ckpt = load_checkpoint(tiny_checkpoint)
    other = save_checkpoint(dataclasses.replace(ckpt, preprocessing=PreprocessConfig(crop_margin=7)),
                            tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="'other'.*preprocessing"):
        universal_experiment(tiny_checkpoint, {"other": other}, synth_manifest, epochs=1, out_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="taken"):
        universal_experiment(tiny_checkpoint, {ckpt.model_name: tiny_checkpoint}, synth_manifest, epochs=1,
                             out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cli_happy_path(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from volrob.cli.main import main

    args = ["universal", "--source", str(tiny_checkpoint), "--target", f"copy={tiny_checkpoint}", "--manifest",
            str(synth_manifest), "--epochs", "1", "--crops-per-case", "1", "--eps", "4", "-o", str(tmp_path),
            "--device", "cpu", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "copy" in printed and "WT dice clean" in printed
    df = pd.read_csv(tmp_path / "universal.csv")
    assert (df.eps == 4).all()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


@pytest.mark.parametrize("change,match", [
    ({"--source": "missing.pt"}, "does not exist"), ({"--target": "nocolon"}, "NAME=CHECKPOINT"),
    ({"--target": "x=missing.pt"}, "does not exist"), ({"--eps": "-1"}, "eps"),
])
def test_cli_bad_input(change: dict, match: str, tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    from volrob.cli.main import main

    opts = {"--source": str(tiny_checkpoint), "--manifest": str(synth_manifest), "-o": str(tmp_path / "o"),
            "--epochs": "1", **change}
    argv = ["universal", *[s for kv in opts.items() for s in kv], "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err
    assert not (tmp_path / "o").exists()
