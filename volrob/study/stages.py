"""The stages of a study, each cached by the hash of its inputs.

Every stage has a key: the parameters it runs with plus the content hashes of what it reads (the data manifest's
digest, the checkpoints' sha256). Its outputs go to ``OUTDIR/<stage>/<name>-<key[:10]>/`` with a ``stage.json``
written when it finishes. A finished stage with the same key is skipped; an interrupted one continues (training
from ``last.pt``, engine stages unit by unit); a stage whose inputs changed gets a new folder, so changing one
stage's parameters reruns that stage and the stages that read its outputs, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volrob import distributed
from volrob.data.manifest import load_manifest, sha256_file
from volrob.data.synth import synthesize
from volrob.engine.config import parse_run_config
from volrob.engine.kernel import RunResult, run_experiment
from volrob.io import atomic_write_text
from volrob.study.config import StudyConfig
from volrob.training.config import TrainConfig, load_train_config
from volrob.utils.config import to_plain


def digest(value: Any) -> str:
    """sha256 of the canonical JSON form of ``value``."""
    return hashlib.sha256(json.dumps(to_plain(value), sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Stage:
    """One cached stage: its folder and whether it finished with this key before."""

    name: str
    folder: Path
    key: str

    @property
    def record(self) -> Path:
        return self.folder / "stage.json"

    def done(self) -> bool:
        try:
            data = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return data.get("key") == self.key and data.get("status") == "finished"

    def finish(self, seconds: float, **info: Any) -> None:
        if distributed.env_info().is_main:
            atomic_write_text(self.record, json.dumps({"stage": self.name, "key": self.key, "status": "finished",
                                                       "seconds": round(seconds, 2), **info}, indent=2,
                                                      default=str) + "\n")


def stage(out: Path, kind: str, name: str, inputs: dict[str, Any]) -> Stage:
    key = digest(inputs)
    return Stage(f"{kind}/{name}", out / kind / f"{name}-{key[:10]}", key)


def data_stage(cfg: StudyConfig, out: Path, log: Callable[[str], None]) -> tuple[Path, Stage | None]:
    """The study's manifest: the given one, or synthetic cases made once (rank 0) for these parameters."""
    if cfg.data.manifest is not None:
        return Path(cfg.data.manifest), None
    synth = cfg.data.synth
    assert synth is not None
    params = {**to_plain(synth), "seed": cfg.seed if synth.seed is None else synth.seed}
    st = stage(out, "data", "synth", params)
    if st.done():
        log(f"data: cached ({st.folder})")
    elif distributed.env_info().is_main:
        log(f"data: synthesising {synth.cases} cases of {synth.shape} into {st.folder}")
        tic = time.perf_counter()
        synthesize(st.folder, cases=synth.cases, shape=tuple(synth.shape), seed=params["seed"],
                   val_fraction=synth.val_fraction, test_fraction=synth.test_fraction, overwrite=True)
        st.finish(time.perf_counter() - tic, params=params)
    distributed.barrier()
    return st.folder / "manifest.json", st


def train_config(path: str, overrides: dict[str, Any], *, manifest: Path, seed: int, device: str,
                 output_dir: str = "") -> TrainConfig:
    """A training config file with the study's manifest, seed and device and the entry's overrides."""
    sets = [f"data.manifest={manifest}", f"seed={seed}", f"train.device={device}", f"output_dir={output_dir or '.'}"]
    sets += [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    return load_train_config(path, sets)


def train_stage(out: Path, kind: str, name: str, cfg_path: str, overrides: dict[str, Any], *, manifest: Path,
                study: StudyConfig, log: Callable[[str], None], progress: bool = False,
                extra_key: dict[str, Any] | None = None) -> Path:
    """Train (or resume, or reuse) one model; returns its best checkpoint."""
    from volrob.training.trainer import Trainer

    probe = train_config(cfg_path, overrides, manifest=manifest, seed=study.seed, device=study.device)
    inputs = {"config": {k: v for k, v in to_plain(probe).items() if k != "output_dir"},
              "manifest": load_manifest(manifest).digest(), **(extra_key or {})}
    st = stage(out, kind, name, inputs)
    best = st.folder / "best.pt"
    if st.done() and best.is_file():
        log(f"{kind} {name}: cached ({st.folder})")
        return best
    cfg = train_config(cfg_path, overrides, manifest=manifest, seed=study.seed, device=study.device,
                       output_dir=str(st.folder))
    resume = (st.folder / "last.pt").is_file()
    log(f"{kind} {name}: {'resuming' if resume else 'training'} {cfg.model.name} for {cfg.train.epochs} epoch(s) "
        f"into {st.folder}")
    tic = time.perf_counter()
    result = Trainer(cfg, progress=progress, config_source=cfg_path, dist=distributed.env_info()).run(
        resume=resume, force=not resume)
    st.finish(time.perf_counter() - tic, best_val_dice=result.best_val_dice, best_epoch=result.best_epoch)
    distributed.barrier()
    return best


def folder_digest(spec: str) -> str:
    """sha256 over every file of a model folder (``scheme:FOLDER``): relative paths and contents, in order."""
    folder = Path(spec.partition(":")[2])
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + bytes.fromhex(sha256_file(path)))
    return h.hexdigest()


def engine_stage(out: Path, kind: str, command: str, section: dict[str, Any], models: list[dict[str, Any]], *,
                 manifest: Path, study: StudyConfig, log: Callable[[str], None], progress: bool,
                 extra: dict[str, Any] | None = None) -> tuple[Stage, RunResult | None]:
    """One engine run (evaluate, grid, transfer or compare) over ``models``; None when cached."""
    raw = {"seed": study.seed, "device": study.device, **section, **(extra or {}), "manifest": str(manifest),
           "models": models}
    cfg = parse_run_config(raw)
    shas = {m["name"]: sha256_file(m["checkpoint"]) if m.get("checkpoint") else folder_digest(m["model"])
            for m in models if m.get("checkpoint") or m.get("model")}
    key = {**{k: v for k, v in to_plain(cfg).items() if k not in ("manifest", "models")},
           "manifest": load_manifest(manifest).digest(),
           "models": [{**{k: v for k, v in m.items() if k != "checkpoint"}, "sha256": shas.get(m["name"])}
                      for m in models]}
    st = stage(out, kind, "run", key)
    if st.done():
        log(f"{kind}: cached ({st.folder})")
        return st, None
    log(f"{kind}: running into {st.folder}")
    tic = time.perf_counter()
    result = run_experiment(cfg, st.folder, command=command, progress=progress, echo=log)
    st.finish(time.perf_counter() - tic, failed=result.failed)
    return st, result
