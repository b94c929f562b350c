"""Training on several processes (CPU, gloo): one DDP step equals one step on the union of the ranks' batches, the
ranks' shards are disjoint and seeded, adversarial training resumes under DDP as if uninterrupted, crafting never
goes through DDP, and ``torchrun -m volrob train`` runs end to end with bad input reported once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from defences.tiny import make_batch, make_ctx
from helpers.torchrun import torchrun as run_torchrun
from training.ddp_workers import ORACLE_DEFENCES, every_rank, one_step, oracle_batch, spawn

from volrob import defences
from volrob.checkpoint import load_checkpoint
from volrob.data.manifest import load_manifest
from volrob.distributed import DistInfo
from volrob.errors import ConfigError
from volrob.training import ddp
from volrob.training.config import TrainConfig
from volrob.training.trainer import Trainer, step_seed
from volrob.utils.config import build_dataclass

SEED = 1


def tiny_config(manifest: Path, out: Path, **extra: Any) -> dict[str, Any]:
    """The ``tiny_checkpoint`` fixture's settings (32^3 ROI, tiny UNet)."""
    return {
        "seed": SEED, "output_dir": str(out), "model": {"name": "unet", "preset": "tiny"},
        "data": {"manifest": str(manifest)},
        "train": {"epochs": 2, "batch_size": 1, "crops_per_case": 1, "lr": 0.01, "val_every": 1},
        "inference": {"roi_size": [32, 32, 32], "overlap": 0.25, "sw_batch_size": 4},
        **extra,
    }


# -- without processes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_cases", [4, 5])
def test_shards_are_disjoint_reproducible_and_even(n_cases: int) -> None:
    data = list(range(n_cases))

    def shard(rank: int, epoch: int) -> list[int]:
        loader = ddp.epoch_loader(data, epoch, seed=3, batch_size=1, num_workers=0,  # type: ignore[arg-type]
                                  info=DistInfo(rank=rank, world_size=2))
        return list(loader.sampler)

    for epoch in range(3):
        a, b = shard(0, epoch), shard(1, epoch)
        assert len(a) == len(b) == ddp.cases_per_rank(n_cases, DistInfo(0, 2))
        assert set(a) | set(b) == set(data)
        if n_cases % 2 == 0:
            assert not set(a) & set(b)
        else:  # one case of the permutation is dealt twice so both ranks take the same number of steps
            assert len(set(a) & set(b)) == 1
        assert shard(0, epoch) == a  # the same seed and epoch deal the same shard (resume repeats it)
    assert len({tuple(shard(0, e) + shard(1, e)) for e in range(3)}) > 1  # each epoch deals anew


def test_step_seeds_differ_between_ranks() -> None:
    seeds = {step_seed(SEED, step, rank) for step in range(5) for rank in range(4)}
    assert len(seeds) == 20
    assert step_seed(SEED, 3) == step_seed(SEED, 3, None)  # one process: run seed and step, as before


class Forbidden(torch.nn.Module):
    """Stands in for the DDP-wrapped loss predictor: crafting must never call it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("crafted through ctx.predictor (the DDP-wrapped network)")


@pytest.mark.parametrize(("name", "options"), [("pgd_at", {"eps": 4, "steps": 1}), ("fgsm_rs", {"eps": 4}),
                                               ("trades", {"steps": 1}), ("vaft", {"steps": 2})])
def test_crafting_uses_the_unwrapped_predictor(name: str, options: dict[str, Any], one_thread: None) -> None:
    ctx = make_ctx("regions")
    ctx.craft_predictor, ctx.predictor = ctx.predictor, Forbidden()
    images, targets = make_batch("regions")
    defence = defences.create(name, **options)
    args = (ctx, images, 0) if name == "trades" else (ctx, images, targets, 0)
    x_adv = defence.craft(*args)  # type: ignore[attr-defined]
    assert x_adv.shape == images.shape and not torch.equal(x_adv, images)


def test_context_defaults_crafting_to_the_loss_predictor() -> None:
    ctx = make_ctx("regions")
    assert ctx.craft_predictor is ctx.predictor


# -- two ranks ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ranks(synth_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One gloo group of 2 spawned ranks runs: one step per oracle defence on each rank's half of a batch; PGD
    adversarial training (1 step, half clean: two DDP forwards per backward), uninterrupted for 2 epochs and
    stopped after epoch 1 then resumed; and ``volrob train`` on the finished run without ``--resume``."""
    root = tmp_path_factory.mktemp("ranks")
    defence = {"name": "pgd_at", "options": {"eps": 4, "steps": 1, "clean_weight": 0.5}}
    full = tiny_config(synth_manifest, root / "full", defence=defence)
    part = tiny_config(synth_manifest, root / "part", defence=defence)
    runs = [{"config": full}, {"config": part, "stop_after": 1}, {"config": part, "resume": True}]
    config = root / "full.yaml"
    config.write_text(json.dumps(full))  # JSON is YAML
    spawn(every_rank, 2, str(root), runs, ["train", str(config), "--quiet"], str(root / "full" / "last.pt"))
    return root


@pytest.mark.parametrize("name", list(ORACLE_DEFENCES))
def test_ddp_step_equals_single_process_step_on_the_union(ranks: Path, name: str, one_thread: None) -> None:
    net, x, y = oracle_batch()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    reference = one_step(net, net, x, y, name)
    for rank in range(2):
        got = torch.load(ranks / f"{name}_rank{rank}.pt", weights_only=True)
        assert got["grads"].keys() == reference["grads"].keys()
        for k, g in reference["grads"].items():
            torch.testing.assert_close(got["grads"][k], g, rtol=0, atol=1e-6)
        for k, w in reference["weights"].items():
            torch.testing.assert_close(got["weights"][k], w, rtol=0, atol=1e-6)
    assert any(not torch.equal(before[k], reference["weights"][k]) for k in before)  # the step moved the weights


def test_each_epoch_is_shared_out_disjointly_with_per_rank_seeds(ranks: Path, synth_manifest: Path) -> None:
    n_train = len(load_manifest(synth_manifest).split("train"))
    rec = [json.loads((ranks / f"run0_rank{r}.json").read_text()) for r in range(2)]
    for epoch in range(2):
        shards = [{i for e, i in rec[r]["cases"] if e == epoch} for r in range(2)]
        assert not shards[0] & shards[1]
        assert shards[0] | shards[1] == set(range(n_train))
    steps = len(rec[0]["seeds"])
    assert steps == len(rec[1]["seeds"]) == 2 * -(-n_train // 2)  # batch_size 1 case per rank, 2 epochs
    for r in range(2):
        assert rec[r]["seeds"] == [step_seed(SEED, k, r) for k in range(steps)]


def test_ddp_resume_equals_uninterrupted(ranks: Path) -> None:
    full, resumed = load_checkpoint(ranks / "full" / "last.pt"), load_checkpoint(ranks / "part" / "last.pt")
    for k, w in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[k], w, rtol=0, atol=1e-6)
    log_f, log_r = (pd.read_csv(ranks / run / "log.csv").drop(columns="seconds") for run in ("full", "part"))
    pd.testing.assert_frame_equal(log_f, log_r)
    assert list(log_f["epoch"]) == [1, 2] and {"loss_clean", "loss_adversarial"} <= set(log_f.columns)
    rec = [json.loads((ranks / f"run2_rank{r}.json").read_text()) for r in range(2)]
    assert {e for r in range(2) for e, _ in rec[r]["cases"]} == {1}  # the resumed call trained epoch 2 only


def test_ddp_checkpoints_hold_the_bare_network_and_the_world_size(ranks: Path) -> None:
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(ranks / "full" / name, expect_model="unet")
        assert not any(k.startswith("module.") for k in ckpt.state_dict)
        ckpt.build_model()  # loads strictly into a fresh network
        assert ckpt.provenance["world_size"] == 2
        assert ckpt.provenance["defence"]["name"] == "pgd_at"
    assert load_checkpoint(ranks / "full" / "last.pt").training_state["world_size"] == 2


def test_resume_on_another_world_size_refused(ranks: Path, synth_manifest: Path) -> None:
    cfg = build_dataclass(TrainConfig, json.loads((ranks / "part" / "config.json").read_text()))
    with pytest.raises(ConfigError, match=r"started on 2 process\(es\), this one has 1"):
        Trainer(cfg, progress=False).run(resume=True)


def test_bad_input_is_one_line_from_rank_zero_and_exit_code_2_everywhere(ranks: Path) -> None:
    rank0, rank1 = (json.loads((ranks / f"command_rank{r}.json").read_text()) for r in range(2))
    assert rank0["code"] == rank1["code"] == 2
    assert rank1["stderr"] == ""
    lines = rank0["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("[rank 0] volrob train: error: ")
    assert "already holds a training run; use --resume" in lines[0]
    assert rank0["guarded_unchanged"]


# -- torchrun -m volrob train -------------------------------------------------------------------------------------
def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node 2 -m volrob train *args`` (CPU, one thread per rank)."""
    return run_torchrun("train", *args)


def test_torchrun_trains_end_to_end(synth_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(tiny_config(synth_manifest, out)))  # JSON is YAML
    done = torchrun(str(config), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best checkpoint:") == 1  # printed by rank 0 alone
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "last.pt", "log.csv"]
    log = pd.read_csv(out / "log.csv")
    assert list(log["epoch"]) == [1, 2] and log["val_dice_mean"].between(0, 1).all()
    ckpt = load_checkpoint(out / "best.pt", expect_model="unet")
    assert ckpt.provenance["world_size"] == 2 and not any(k.startswith("module.") for k in ckpt.state_dict)
    ckpt.build_predictor()

