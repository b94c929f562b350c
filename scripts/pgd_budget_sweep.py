"""Dice of one case under an attack at several budgets (a quick strength curve); prints one JSON object.

    python scripts/pgd_budget_sweep.py --checkpoint runs/demo/unet/best.pt \
        --manifest runs/demo/data/manifest.json --split val --eps 8 16 32 --steps 10 --loss bce

With ``--attack vafa3d --q-max 20 40 80`` the budgets are VAFA's quantisation bounds instead of ε. The sweep is one
white-box engine run (:func:`volrob.engine.kernel.run_experiment`, command ``robustness``) on the one case, so it is
crafted and scored exactly as in ``volrob robustness`` (Dice on the source grid, the case's attack seed from
``--seed`` and its id). Give ``-o`` to keep the run folder (results.csv and friends; a rerun resumes there);
without it the run goes to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from volrob.checkpoint import load_checkpoint
from volrob.data.labels import REGIONS
from volrob.data.manifest import labelled_cases, load_manifest
from volrob.engine.config import RunConfig, parse_run_config
from volrob.engine.kernel import RunResult, run_experiment
from volrob.errors import ConfigError, DataError, VolrobError

LOSS_ATTACKS = ("pgd", "bim", "fgsm", "targeted_bim")
"""Attacks whose objective is chosen with ``loss`` (the others bring their own)."""


def case_id(manifest: str, split: str, index: int, checkpoint: str) -> str:
    """The id of the ``index``-th labelled case of ``split`` (manifest order) for the checkpoint's modalities."""
    cases = labelled_cases(load_manifest(manifest), split, list(load_checkpoint(checkpoint).modalities))
    if not 0 <= index < len(cases):
        raise ConfigError(f"--case {index}: split {split!r} has {len(cases)} labelled case(s)", path=manifest)
    return cases[index].id


def attack_entry(attack: str, steps: int, loss: str, eps: list[float], q_max: list[float] | None) -> dict[str, Any]:
    """The config's one attack entry: ``attack`` with its options and the budgets as ``eps`` or a ``q_max`` sweep."""
    options: dict[str, Any] = {} if attack == "fgsm" else {"steps": steps}
    if attack in LOSS_ATTACKS:
        options["loss"] = loss
    entry: dict[str, Any] = {"attack": attack, "options": options}
    if q_max is None:
        entry["eps"] = list(eps)
    else:
        entry["sweep"] = {"q_max": list(q_max)}
    return entry


def sweep_config(args: argparse.Namespace) -> RunConfig:
    """The engine config of the sweep: one model, one case, one attack at every budget."""
    case = case_id(args.manifest, args.split, args.case, args.checkpoint)
    return parse_run_config({
        "manifest": args.manifest, "split": args.split, "cases": [case], "seed": args.seed,
        "models": [{"name": "model", "checkpoint": args.checkpoint}],
        "attacks": [attack_entry(args.attack, args.steps, args.loss, args.eps, args.q_max)]})


def report(res: RunResult) -> dict[str, Any]:
    """The JSON object: the case, attack and options, clean Dice per region, and per budget the adversarial Dice,
    SSIM, attack seconds and the first and last loss of the attack's record."""
    assert res.tables is not None
    rows, (case,) = res.tables.results, res.cases
    if not res.tables.failures.empty:
        raise DataError(f"the sweep failed: {res.tables.failures.iloc[0]['reason']}", path=res.out_dir)
    dice = rows[rows["metric"] == "dice"]
    first = res.cells[0]
    options = {k: v for k, v in first.options.items() if k != first.budget_key}
    clean = dice[dice["cell"] == first.id].set_index("region")["clean"]
    out: dict[str, Any] = {"case": case, "attack": first.attack, "options": options,
                           "clean": {r: round(float(clean[r]), 4) for r in REGIONS}, "budgets": []}
    for cell in res.cells:
        mine = dice[dice["cell"] == cell.id].set_index("region")
        loss = res.tables.records.get(f"{cell.id}/{case}", {}).get("loss") or []
        out["budgets"].append({
            str(cell.budget_key): cell.budget, "dice": {r: round(float(mine.at[r, "adversarial"]), 4) for r in REGIONS},
            "ssim": round(float(mine["ssim"].iloc[0]), 4), "seconds": round(float(mine["seconds"].iloc[0]), 1),
            "loss_first_last": [loss[0], loss[-1]] if loss else None})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--case", type=int, default=0, help="index of the case within the split")
    ap.add_argument("--attack", default="pgd")
    ap.add_argument("--eps", type=float, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--q-max", type=float, nargs="+", help="budgets are q_max values (VAFA) instead of --eps")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--loss", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", help="keep the run folder here (default: a temporary folder, removed)")
    ap.add_argument("--quiet", action="store_true", help="no progress output (stderr)")
    args = ap.parse_args(argv)

    def echo(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr)

    try:
        cfg = sweep_config(args)
        with tempfile.TemporaryDirectory(prefix="pgd_sweep_") as tmp:
            out = Path(args.out) if args.out else Path(tmp)
            res = run_experiment(cfg, out, command="robustness", progress=not args.quiet, echo=echo)
            result = report(res)
    except VolrobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
