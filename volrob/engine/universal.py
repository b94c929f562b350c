"""The universal-perturbation experiment as two cells of the kernel.

Before the units run, one ROI-sized perturbation is learned on the source's training cases
(:func:`volrob.attacks.universal.learn_universal`) by rank 0 and stored in ``OUTDIR/universal/`` (``delta.npz``
and ``record.json`` with the parameters it was learned with). A rerun with the same parameters reuses it; other
parameters stop the run, as for any unit. The run then has two cells on the source, scored on every target:
``universal`` (the learned perturbation tiled over each unseen volume) and ``sign_noise`` (uniform random signs of
the same L∞ budget, seeded per case): the control that says whether the learned direction matters.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import torch

from volrob import distributed
from volrob.attacks.universal import learn_universal
from volrob.engine.attack_spec import cell_id
from volrob.engine.cases import CaseSource
from volrob.engine.cells import Cell
from volrob.engine.config import RunConfig
from volrob.engine.models import ModelPool
from volrob.engine.progress import Progress
from volrob.engine.store import RunStore, canonical, differences
from volrob.errors import ConfigError
from volrob.io import atomic_write_bytes


def _params(cfg: RunConfig, pool: ModelPool, train: CaseSource) -> dict[str, Any]:
    u = cfg.universal
    assert u is not None
    return canonical({"source": u.source, "source_sha256": pool.sha(u.source), "train_split": u.train_split,
                      "train_cases": {c: train.entry_digest(c) for c in train.ids}, "eps": u.eps, "epochs": u.epochs,
                      "crops_per_case": u.crops_per_case, "step": u.step, "seed": cfg.seed,
                      "window": cfg.window})


def _learn(cfg: RunConfig, pool: ModelPool, train: CaseSource, reporter: Progress) -> tuple[torch.Tensor, dict]:
    u = cfg.universal
    assert u is not None
    src = pool.sources[u.source]
    volumes, targets = [], []
    for case in train.ids:
        p = train.prepare(case, src.preprocessing)
        volumes.append(p.x[0])
        targets.append(p.target(src.predictor.output_mode)[0])
    train.release()
    reporter.write(f"learning the universal perturbation on {len(volumes)} {u.train_split} case(s) of {u.source}")
    return learn_universal(src.predictor, volumes, targets, eps=u.eps, roi=src.predictor.window.roi_size,
                           epochs=u.epochs, crops_per_case=u.crops_per_case, step=u.step, seed=cfg.seed,
                           progress=reporter.enabled)


def universal_cells(cfg: RunConfig, pool: ModelPool, store: RunStore, device: torch.device,
                    reporter: Progress) -> list[Cell]:
    """Learn (or reuse) the universal perturbation and return its two cells (see the module docstring)."""
    u = cfg.universal
    if u is None:
        return []
    src = pool.sources[u.source]
    # Checked here, before learning writes universal/ into the output folder, and not only when the kernel checks
    # the cells: a target in another attack space would otherwise fail the run after the folder holds a learned
    # perturbation but no run.json, and the next run into that folder would be refused.
    pool.check_shared_space([u.source, *cfg.target_names], "a universal perturbation")
    train = CaseSource(cfg.manifest, u.train_split, src.modalities)
    params = _params(cfg, pool, train)
    folder = store.root / "universal"
    if distributed.env_info().is_main:
        stored = store.read(folder / "record.json")
        if stored is not None and differences(stored.get("params") or {}, params):
            raise ConfigError("universal/ holds a perturbation learned with other parameters "
                              f"({', '.join(differences(stored['params'], params)[:6])}); use --force to start over or "
                              "choose another output folder", path=store.root)
        if stored is None or not (folder / "delta.npz").is_file():
            delta, record = _learn(cfg, pool, train, reporter)
            buf = io.BytesIO()
            np.savez(buf, delta=delta.numpy(), eps=np.float64(u.eps), roi=np.asarray(delta.shape[1:]))
            atomic_write_bytes(folder / "delta.npz", buf.getvalue())
            store.write_json("universal/record.json", {"params": params, "record": record})
    distributed.barrier()
    data = (folder / "delta.npz").read_bytes()
    with np.load(io.BytesIO(data)) as npz:
        delta = torch.from_numpy(np.array(npz["delta"], dtype=np.float32))
    sha = hashlib.sha256(data).hexdigest()
    targets = tuple(cfg.target_names)
    opts = {"eps": u.eps}
    fingerprint = {"delta_sha256": sha}
    return [
        Cell(cell_id(u.source, "universal", {**opts, **fingerprint}, "eps", u.eps), u.source, targets, "universal",
             opts, "eps", u.eps, fingerprint=fingerprint, resources={"delta": delta}),
        Cell(cell_id(u.source, "sign_noise", opts, "eps", u.eps), u.source, targets, "sign_noise", opts, "eps",
             u.eps),
    ]
