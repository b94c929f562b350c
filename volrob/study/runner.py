"""``volrob run STUDY.yaml -o OUTDIR``: data → trained models → clean evaluation → white-box grid → transfer
matrix → robust fine-tunes → comparison, every stage cached (:mod:`volrob.study.stages`) and every engine stage
spread over the processes of a ``torchrun`` job (training with DDP, units of work sharded).

``OUTDIR/study.json`` (rank 0) says which folder holds each stage's current outputs, with the study's
configuration and how long each stage took; ``OUTDIR/report.html`` (rank 0, rebuilt on every run from the stages'
tables, :mod:`volrob.report`) is the page to read, with its figures and tables in ``OUTDIR/report_files/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volrob import distributed
from volrob.data.manifest import sha256_file
from volrob.io import atomic_write_text
from volrob.study.config import StudyConfig
from volrob.study.stages import data_stage, engine_stage, train_stage
from volrob.utils.config import to_plain
from volrob.utils.runtime import environment


@dataclass
class StudyResult:
    """Where each stage's outputs are, and the models the study produced."""

    out_dir: Path
    stages: dict[str, Path] = field(default_factory=dict)
    checkpoints: dict[str, Path | None] = field(default_factory=dict)
    """Each model's checkpoint (None for a given model folder, which the study's config names)."""
    seconds: float = 0.0
    report: Path | None = None
    """The study's HTML page (``OUTDIR/report.html``), written last by rank 0."""


def _models(cfg: StudyConfig, checkpoints: dict[str, Path | None], defended: set[str]) -> list[dict[str, Any]]:
    """The run-config ``models`` entries of ``checkpoints`` (None: a given model folder)."""
    given = {m.name: m for m in cfg.models}
    return [given[n].entry(p, n in defended) if n in given and given[n].model is not None
            else {"name": n, "checkpoint": str(p), "defended": n in defended} for n, p in checkpoints.items()]


def run_study(cfg: StudyConfig, out_dir: str | Path, *, progress: bool = True,
              log: Callable[[str], None] = print) -> StudyResult:
    """Run (or continue) every stage of ``cfg`` into ``out_dir``."""
    tic = time.perf_counter()
    info, _ = distributed.setup(cfg.device)
    say = log if info.is_main else (lambda _text: None)
    out = Path(out_dir).resolve()
    result = StudyResult(out)
    manifest, data = data_stage(cfg, out, say)
    if data is not None:
        result.stages["data"] = data.folder
    for m in cfg.models:
        if m.model is not None:
            result.checkpoints[m.name] = None
        elif m.checkpoint is not None:
            result.checkpoints[m.name] = Path(m.checkpoint)
        else:
            assert m.config is not None
            result.checkpoints[m.name] = train_stage(out, "train", m.name, m.config, m.set, manifest=manifest,
                                                     study=cfg, log=say, progress=progress)
    trained = dict(result.checkpoints)
    common = {"manifest": manifest, "study": cfg, "log": say, "progress": progress}
    st, _ = engine_stage(out, "evaluate", "evaluate", cfg.evaluate, _models(cfg, trained, set()), **common)
    result.stages["evaluate"] = st.folder
    if cfg.grid is not None:
        st, _ = engine_stage(out, "grid", "robustness", cfg.grid, _models(cfg, trained, set()), **common)
        result.stages["grid"] = st.folder
    if cfg.transfer is not None:
        st, _ = engine_stage(out, "transfer", "transfer", cfg.transfer, _models(cfg, trained, set()), **common,
                             extra={"transfer": True})
        result.stages["transfer"] = st.folder
    defended = set()
    for d in cfg.defend:
        source = cfg.model(d.source)
        assert source.config is not None
        init = trained[d.source]
        assert init is not None
        sets = {**source.set, "train.init_from": str(init), "defence": d.defence, **d.set}
        result.checkpoints[d.name] = train_stage(out, "defend", d.name, source.config, sets, manifest=manifest,
                                                 study=cfg, log=say, progress=progress,
                                                 extra_key={"init_sha256": sha256_file(init)})
        if (d.defence.get("name") or "none") != "none":  # a control: the same fine-tuning without a defence
            defended.add(d.name)
    if cfg.compare is not None:
        names = list(dict.fromkeys([d.source for d in cfg.defend] + [d.name for d in cfg.defend]))
        models = _models(cfg, {n: result.checkpoints[n] for n in names}, defended)
        section = dict(cfg.compare)
        sources = {d.source for d in cfg.defend}
        if "reference" not in section and len(sources) == 1:
            section["reference"] = next(iter(sources))
        st, _ = engine_stage(out, "compare", "robustness", section, models, **common)
        result.stages["compare"] = st.folder
    result.seconds = time.perf_counter() - tic
    if info.is_main:
        _write_index(cfg, result)
        from volrob.report.build import build_report

        tic = time.perf_counter()
        result.report = build_report(out, out / "report.html").page
        say(f"report: written in {time.perf_counter() - tic:.0f} s")
    distributed.barrier()
    return result


def _write_index(cfg: StudyConfig, result: StudyResult) -> None:
    out = result.out_dir

    def rel(p: Path | None) -> str | None:
        if p is None:
            return None
        try:
            return str(Path(p).resolve().relative_to(out))
        except ValueError:
            return str(p)

    index = {"name": cfg.name, "config": to_plain(cfg), "stages": {k: rel(v) for k, v in result.stages.items()},
             "checkpoints": {k: rel(v) for k, v in result.checkpoints.items()},
             "seconds": round(result.seconds, 2), "environment": environment()}
    atomic_write_text(out / "study.json", json.dumps(index, indent=2, default=str) + "\n")
