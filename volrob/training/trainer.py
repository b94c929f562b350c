"""The training loop: random crops, AdamW, warm-up + cosine, periodic sliding-window validation, best/last
checkpoints, CSV log, resume, AMP on CUDA. The loss of each batch is the configured defence's (standard training:
Dice + (B)CE on the clean crops); ``train.init_from`` fine-tunes a trained checkpoint.

Under ``torchrun`` with several processes (:mod:`volrob.training.ddp` has the details) each rank trains
``DistributedDataParallel(net)`` on its shard of every epoch's cases and crafts adversarial examples with the
unwrapped network (``TrainContext.craft_predictor``); one synchronised optimiser step per batch. Rank 0 alone
computes the normalisation statistics (sent to the others), validates (the others wait), writes ``config.json``,
``log.csv`` (the training loss averaged over every rank's steps) and the checkpoints (the unwrapped network's
weights; ``world_size`` in the provenance), reads ``last.pt`` on ``--resume`` (sent to the others: the output folder
need only be on rank 0's node), and prints. A resumed run must use the world size it was started with.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from volrob import defences, distributed, losses, models
from volrob.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from volrob.data.cases import load_case
from volrob.data.labels import REGIONS, canonical_to_regions, logits_to_regions, out_channels_for
from volrob.data.manifest import Case, Manifest, load_manifest
from volrob.data.preprocess import PreprocessConfig, Preprocessed, channel_stats, preprocess
from volrob.distributed import DistInfo
from volrob.errors import ConfigError, DataError
from volrob.evaluation.metrics import dice
from volrob.inference import precision
from volrob.inference.fast_path import apply_layout, resolve_fast_path
from volrob.inference.predictor import Predictor
from volrob.io import atomic_write_text
from volrob.training import ddp
from volrob.training.config import TrainConfig
from volrob.training.sampling import CropDataset
from volrob.training.schedule import warmup_cosine
from volrob.training.step import train_context, train_step
from volrob.utils.config import to_plain
from volrob.utils.runtime import environment, resolve_device, seeded
from volrob.utils.transfer import to_device

LOG_FIELDS = ["epoch", "step", "lr", "train_loss", *(f"val_dice_{r}" for r in REGIONS), "val_dice_mean", "seconds"]


def step_seed(seed: int, step: int, rank: int | None = None) -> int:
    """The seed of global step ``step``'s random choices (adversarial crafting): run seed and step in one process;
    under several processes (``rank`` given) also the rank, so that no two ranks craft from the same random
    start."""
    key = [seed, step] if rank is None else [seed, step, rank]
    return int(np.random.SeedSequence(key).generate_state(1)[0] % (2**31))


@dataclass
class TrainResult:
    """Where a finished run left its files, and its best validation Dice."""

    output_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    log: Path
    best_val_dice: float
    best_epoch: int


def _load_preprocessed(manifest: Manifest, case: Case, pre: PreprocessConfig) -> Preprocessed:
    data = load_case(manifest, case)
    return preprocess(data.image, data.label, data.affine, pre)


def validate(predictor: Predictor, cases: list[tuple[torch.Tensor, torch.Tensor]], output_mode: str,
             device: torch.device) -> dict[str, float]:
    """Mean Dice per region over (image, canonical label) pairs, in the preprocessed space."""
    scores: dict[str, list[float]] = {r: [] for r in REGIONS}
    predictor.eval()
    with torch.no_grad():
        for image, label in cases:
            logits = predictor(image[None].to(device))
            pred = logits_to_regions(logits, output_mode)[0].cpu().numpy()
            gt = canonical_to_regions(label[0]).numpy()
            for i, r in enumerate(REGIONS):
                scores[r].append(dice(pred[i], gt[i]))
    out = {r: float(np.mean(v)) for r, v in scores.items()}
    out["mean"] = float(np.mean([out[r] for r in REGIONS]))
    return out


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs it; ``run(resume=...)``. ``dist``: this process's
    place in a ``torchrun`` job whose process group is already joined (:func:`volrob.distributed.setup`); one
    process when absent."""

    def __init__(self, cfg: TrainConfig, *, progress: bool = True, config_source: str | None = None,
                 dist: DistInfo | None = None) -> None:
        self.cfg = cfg
        self.dist = dist or DistInfo()
        if self.dist.distributed and not distributed.active():
            raise RuntimeError("Trainer: join the process group (volrob.distributed.setup) before training on "
                               f"{self.dist.world_size} processes")
        self.progress = progress and self.dist.is_main
        self.config_source = config_source
        self.out = Path(cfg.output_dir)
        self.device = (distributed.rank_device(cfg.train.device, self.dist) if self.dist.distributed
                       else resolve_device(cfg.train.device))
        self.pre = cfg.preprocessing
        self.window = cfg.inference
        self.manifest = load_manifest(cfg.data.manifest)
        self.train_cases = self.manifest.split(cfg.data.train_split)
        self.val_cases = self.manifest.split(cfg.data.val_split)
        if not self.train_cases:
            raise DataError(f"no cases in split {cfg.data.train_split!r}", path=self.manifest.path)
        self.model_cfg: dict[str, Any] = {
            "in_channels": len(self.manifest.modalities),
            "out_channels": out_channels_for(cfg.data.output_mode),
            "roi_size": list(self.window.roi_size),
            "preset": cfg.model.preset,
            **cfg.model.options,
        }
        with seeded(cfg.seed):
            self.net = models.create(cfg.model.name, **self.model_cfg).to(self.device)
        self.loss_name = cfg.train.loss or losses.default_for(cfg.data.output_mode)
        self.loss = losses.create(self.loss_name)
        self.defence = defences.create(cfg.defence.name, **cfg.defence.options)
        self.init = self._init_checkpoint()

    def _init_checkpoint(self) -> Checkpoint | None:
        """The checkpoint to fine-tune from (``train.init_from``), checked against this run's model and data."""
        path = self.cfg.train.init_from
        if path is None:
            return None
        ckpt = load_checkpoint(path, expect_model=self.cfg.model.name)
        ours = {k: to_plain(v) for k, v in self.model_cfg.items()}
        theirs = {k: to_plain(v) for k, v in ckpt.model_config.items()}
        if ours != theirs:
            raise ConfigError(f"train.init_from: the checkpoint's model configuration {theirs} differs from this "
                              f"run's {ours}", path=path)
        for what, mine, other in (("output mode", self.cfg.data.output_mode, ckpt.output_mode),
                                  ("modalities", list(self.manifest.modalities), list(ckpt.modalities)),
                                  ("preprocessing", self.pre.to_dict(), ckpt.preprocessing.to_dict())):
            if mine != other:
                raise ConfigError(f"train.init_from: the checkpoint's {what} {other} differs from this run's {mine}",
                                  path=path)
        return ckpt

    # -- data ---------------------------------------------------------------------------------------------------
    def _datasets(self) -> tuple[CropDataset, list[tuple[torch.Tensor, torch.Tensor]]]:
        loaders = [partial(_load_preprocessed, self.manifest, c, self.pre) for c in self.train_cases]
        ds = CropDataset(loaders, aug=self.cfg.augmentation, roi=self.window.roi_size,
                         crops=self.cfg.train.crops_per_case, output_mode=self.cfg.data.output_mode,
                         seed=self.cfg.seed, cache=self.cfg.data.cache)
        val = []
        for c in self.val_cases if self.dist.is_main else []:  # rank 0 alone validates
            p = _load_preprocessed(self.manifest, c, self.pre)
            if p.label is not None:
                val.append((p.image.as_tensor().float(), p.label.as_tensor()))
        return ds, val

    # -- checkpoints --------------------------------------------------------------------------------------------
    def _checkpoint(self, norm: dict[str, list[float]], provenance: dict[str, Any],
                    training_state: dict[str, Any] | None) -> Checkpoint:
        return Checkpoint(
            model_name=self.cfg.model.name, model_config=dict(self.model_cfg),
            state_dict={k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
            preprocessing=self.pre, normalisation=norm, label_convention=self.manifest.label_convention,
            output_mode=self.cfg.data.output_mode, modalities=list(self.manifest.modalities),
            inference=self.window, provenance=provenance, training_state=training_state,
        )

    def _write_log(self, rows: list[dict[str, Any]]) -> Path:
        buf = io.StringIO()
        parts = sorted({k for row in rows for k in row if k not in LOG_FIELDS})  # the defence's loss parts
        at = LOG_FIELDS.index("train_loss") + 1
        writer = csv.DictWriter(buf, fieldnames=[*LOG_FIELDS[:at], *parts, *LOG_FIELDS[at:]])
        writer.writeheader()
        writer.writerows(rows)
        path = self.out / "log.csv"
        atomic_write_text(path, buf.getvalue())
        return path

    # -- start --------------------------------------------------------------------------------------------------
    def _prepare_output(self, *, resume: bool, force: bool) -> None:
        """Refuse to overwrite a run (or to resume none); create the output folder."""
        if (self.out / "last.pt").exists() and not (resume or force):
            raise ConfigError("output_dir already holds a training run; use --resume to continue it, --force to "
                              "start over, or choose another output_dir", path=self.out)
        if resume and not (self.out / "last.pt").exists():
            raise ConfigError("--resume: no last.pt to resume from", path=self.out)
        self.out.mkdir(parents=True, exist_ok=True)

    def _resume_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, list[float]]]:
        """Weights, training state and normalisation of ``last.pt``, checked against this run."""
        last_path = self.out / "last.pt"
        ckpt = load_checkpoint(last_path, expect_model=self.cfg.model.name)
        state = ckpt.training_state or {}
        if state.get("config") != to_plain(self.cfg):
            raise ConfigError("--resume: the configuration differs from the run being resumed", path=last_path)
        started = int(state.get("world_size", 1))
        if started != self.dist.world_size:
            raise ConfigError(f"--resume: the run was started on {started} process(es), this one has "
                              f"{self.dist.world_size}; resume it with the same number", path=last_path)
        return ckpt.build_model().state_dict(), state, ckpt.normalisation

    @staticmethod
    def _normalisation(ds: CropDataset) -> dict[str, list[float]]:
        mean, std = channel_stats([ds.case(i)[0] for i in range(len(ds))])
        return {"mean": mean, "std": std}

    # -- loop ---------------------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False, force: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train (or continue with ``resume``); ``stop_after`` ends this call after that epoch (1-based), leaving a
        resumable ``last.pt`` — the same weights as an uninterrupted run once resumed."""
        cfg, t, main = self.cfg, self.cfg.train, self.dist.is_main
        last_path, best_path = self.out / "last.pt", self.out / "best.pt"
        ddp.on_main(lambda: self._prepare_output(resume=resume, force=force))
        ds, val = self._datasets()
        steps_per_epoch = -(-ddp.cases_per_rank(len(ds), self.dist) // t.batch_size)
        opt = torch.optim.AdamW(self.net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        sched = warmup_cosine(opt, warmup_steps=t.warmup_epochs * steps_per_epoch,
                              total_steps=t.epochs * steps_per_epoch)
        amp_dtype = precision.amp_dtype("auto" if t.amp else "off", self.device)  # CUDA: bf16, else fp16
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

        start_epoch, step, best, best_epoch, log_rows = 0, 0, -1.0, -1, []
        norm: dict[str, list[float]]
        if resume:
            weights, state, norm = ddp.on_main(self._resume_state)
            self.net.load_state_dict(weights)
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, step = int(state["epoch"]), int(state["step"])
            best, best_epoch, log_rows = float(state["best"]), int(state["best_epoch"]), list(state["log"])
        elif self.init is not None:  # fine-tune: same weights and the same normalisation as the source model
            self.net.load_state_dict(self.init.build_model().state_dict())
            norm = {k: list(v) for k, v in self.init.normalisation.items()}
        else:
            norm = ddp.on_main(lambda: self._normalisation(ds))
        example = torch.zeros(1, len(self.manifest.modalities), *self.window.roi_size)
        fast = resolve_fast_path(amp="off", channels_last=str(self.window.channels_last),
                                 cudnn_benchmark=str(self.window.cudnn_benchmark), compile="off", device=self.device,
                                 network=self.net)
        apply_layout(self.net, fast)  # before DDP wraps it, so its buckets see the final layout
        train_net = ddp.wrap(self.net, self.dist, self.device, example)

        def autocast() -> contextlib.AbstractContextManager[Any]:
            return precision.autocast(self.device, amp_dtype)

        ctx = train_context(self.net, train_net, norm=norm, window=self.window, output_mode=cfg.data.output_mode,
                            loss=self.loss, device=self.device, autocast=autocast)
        plain = ctx.craft_predictor  # crafting and validation run the bare network, never DDP's
        ddp.agree(lambda: self.defence.setup(ctx))

        provenance: dict[str, Any] = {
            "seed": cfg.seed, "config": to_plain(cfg), "config_source": self.config_source,
            "manifest": str(self.manifest.path), "manifest_sha256": self.manifest.digest(),
            "train_cases": [c.id for c in self.train_cases], "val_cases": [c.id for c in self.val_cases],
            "loss": self.loss_name, "defence": self.defence.describe(), "environment": environment(),
            "device": str(self.device), "world_size": self.dist.world_size,
        }
        if self.init is not None:
            provenance["init_from"] = {"path": str(cfg.train.init_from), "sha256": self.init.sha256}
        if main:
            atomic_write_text(self.out / "config.json", json.dumps(to_plain(cfg), indent=2) + "\n")
        rank = self.dist.rank if self.dist.distributed else None
        for epoch in range(start_epoch, t.epochs):
            tic = time.perf_counter()
            ds.set_epoch(epoch)
            loader = ddp.epoch_loader(ds, epoch, seed=cfg.seed, batch_size=t.batch_size,
                                      num_workers=cfg.data.num_workers, info=self.dist,
                                      pin_memory=self.device.type == "cuda")
            train_net.train()
            losses_epoch: list[float] = []
            parts_epoch: dict[str, list[float]] = {}
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{t.epochs}", disable=not self.progress, leave=False,
                       dynamic_ncols=True)
            for images, targets in bar:
                images, targets = to_device(images, self.device), to_device(targets, self.device)
                out = train_step(self.defence, ctx, images, targets, seed=step_seed(cfg.seed, step, rank),
                                 optimizer=opt, scaler=scaler, grad_clip=t.grad_clip)
                for key, value in out.parts.items():
                    parts_epoch.setdefault(key, []).append(value)
                sched.step()
                step += 1
                losses_epoch.append(float(out.loss.detach()))
                bar.set_postfix(loss=f"{losses_epoch[-1]:.4f}")
            losses_epoch, parts_epoch = ddp.gathered(losses_epoch, parts_epoch)
            if main:
                row: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": opt.param_groups[0]["lr"],
                                       "train_loss": float(np.mean(losses_epoch)),
                                       **{f"loss_{k}": float(np.mean(v)) for k, v in sorted(parts_epoch.items())}}
                is_last = epoch + 1 == t.epochs
                if val and ((epoch + 1) % t.val_every == 0 or is_last):
                    scores = validate(plain, val, cfg.data.output_mode, self.device)
                    row.update({f"val_dice_{r}": scores[r] for r in REGIONS})
                    row["val_dice_mean"] = scores["mean"]
                    if scores["mean"] > best:
                        best, best_epoch = scores["mean"], epoch + 1
                        prov = {**provenance, "epochs": epoch + 1, "val_dice": scores, "best_epoch": best_epoch}
                        save_checkpoint(self._checkpoint(norm, prov, None), best_path)
                row["seconds"] = round(time.perf_counter() - tic, 2)
                log_rows.append(row)
                self._write_log(log_rows)
                state = {"epoch": epoch + 1, "step": step, "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "best": best,
                         "best_epoch": best_epoch, "log": log_rows, "config": to_plain(cfg),
                         "world_size": self.dist.world_size}
                prov = {**provenance, "epochs": epoch + 1, "best_epoch": best_epoch}
                save_checkpoint(self._checkpoint(norm, prov, state), last_path)
                if self.progress:
                    msg = f"epoch {epoch + 1}/{t.epochs} loss {row['train_loss']:.4f}"
                    if "val_dice_mean" in row:
                        msg += " val dice " + " ".join(f"{r} {row[f'val_dice_{r}']:.3f}" for r in REGIONS)
                    print(msg + f" ({row['seconds']:.1f}s)", flush=True)
            best, best_epoch = distributed.broadcast((best, best_epoch))  # the other ranks wait for rank 0 here
            if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < t.epochs:
                return TrainResult(self.out, best_path, last_path, self.out / "log.csv", best, best_epoch)
        if main and not best_path.exists():  # no validation cases: the last weights are the best we know
            prov = {**provenance, "epochs": t.epochs, "best_epoch": t.epochs, "val_dice": None}
            save_checkpoint(self._checkpoint(norm, prov, None), best_path)
            best_epoch = t.epochs
        best, best_epoch = distributed.broadcast((best, best_epoch))
        return TrainResult(self.out, best_path, last_path, self.out / "log.csv", best, best_epoch)
