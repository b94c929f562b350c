"""Attack-strength table: PGD, FGSM, VAFA, the tile protocol and SSIM-matched noise on one model, with checks.

    python scripts/attack_table.py --config configs/robustness/attack_table.yaml -o runs/demo/attack_table \
        --doc docs/attack_table.md

Runs the white-box grid of ``--config`` with the engine (:func:`volrob.engine.kernel.run_experiment`, command
``robustness``: resumable, finished units are reused, and ``volrob robustness`` can continue the same folder), then
for every VAFA cell finds the Gaussian-noise σ whose mean SSIM on the same cases equals the VAFA cell's, runs that
noise as one more cell, and writes a Markdown table plus four checks to ``--doc``:

1. PGD L∞ ε=8, 20 steps (exact full-volume gradient; ``--eps``/``--steps``) lowers mean WT Dice by at least 50 %
   (relative). The check also reports what the drop depends on: per case, the ground-truth whole-tumour volume
   against the relative drop (Spearman ρ), and the smallest exact-PGD ε of the grid whose mean drop reaches 50 %;
2. each VAFA cell lowers WT Dice more than noise of the same SSIM (paired one-sided Wilcoxon over cases);
3. the exact full-volume PGD is at least as strong as the tile protocol at the same ε and steps;
4. the grid's sanity flags are clear.

Everything is read from the run's tables (``results.csv`` rows, ``summary.csv``, the sanity flags). Prints one JSON
object (the checks and the table rows). Everything is seeded by the config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr, wilcoxon

from volrob.data.cases import load_case
from volrob.data.manifest import load_manifest
from volrob.engine.attack_spec import AttackSpec, check_attack
from volrob.engine.cases import CaseSource
from volrob.engine.cells import Cell
from volrob.engine.config import RunConfig, load_run_config
from volrob.engine.kernel import RunResult, run_complete
from volrob.engine.seeds import case_seed
from volrob.errors import ConfigError, DataError, VolrobError
from volrob.evaluation.calibrate import sigma_for_ssim
from volrob.evaluation.sanity import SanityFlag, format_flags
from volrob.io import atomic_write_text, shown_path

REGIONS = ("TC", "WT", "ET")
COMMAND = "robustness"
"""The engine command the grid runs as: the folder can be resumed with ``volrob robustness`` as well."""


def echo_for(quiet: bool) -> Callable[[str], None]:
    """Where the engine's plan lines go: stderr (stdout carries the JSON report), or nowhere with ``--quiet``."""
    return (lambda _text: None) if quiet else (lambda text: print(text, file=sys.stderr))


def run_grid(cfg: RunConfig, out: str | Path, *, quiet: bool) -> RunResult:
    """Run (or resume) ``cfg`` white-box into ``out``; DataError when any unit failed (a rerun retries it)."""
    return run_complete(cfg, out, command=COMMAND, progress=not quiet, echo=echo_for(quiet))


def clean_volumes(cfg: RunConfig, res: RunResult, model: str) -> tuple[list[torch.Tensor], list[int]]:
    """The run's clean inputs as ``model`` sees them (preprocessed, attack space) and their attack seeds, in the
    run's case order: the volumes and seeds each noise unit of the run perturbs."""
    assert res.pool is not None
    src = res.pool.sources[model]
    cases = CaseSource(cfg.manifest, cfg.split, src.modalities, cases=res.cases)
    vols = []
    for cid in cases.ids:
        vols.append(cases.prepare(cid, src.preprocessing).x)
        cases.release()
    return vols, [case_seed(cfg.seed, c) for c in cases.ids]


def per_case(results: pd.DataFrame, cell: str, column: str) -> pd.Series:
    """One value of ``column`` per case of ``cell`` (perturbation columns repeat over regions and metrics)."""
    return results[results["cell"] == cell].groupby("case")[column].first()


def wt_dice(results: pd.DataFrame, cell: str) -> pd.Series:
    rows = results[(results["cell"] == cell) & (results["metric"] == "dice") & (results["region"] == "WT")]
    return rows.set_index("case")["adversarial"].sort_index()


def summary_value(summary: pd.DataFrame, cell: str, region: str, metric: str, column: str) -> float:
    """One number of ``summary.csv`` (the cell is white-box: one scored model)."""
    row = summary[(summary["cell"] == cell) & (summary["region"] == region) & (summary["metric"] == metric)]
    if row.empty:
        raise DataError(f"summary: no {region} {metric} row for cell {cell}")
    return float(row[column].iloc[0])


def wt_volumes_ml(cfg: RunConfig, cases: Sequence[str]) -> pd.Series:
    """Ground-truth whole-tumour volume (label > 0 on the source grid, mL) of each case id in ``cases``."""
    man = load_manifest(cfg.manifest)
    out = {}
    for cid in cases:
        data = load_case(man, cid)
        if data.label is None:
            raise DataError(f"case {cid} has no label; the tumour volume needs one", path=man.path)
        out[cid] = float((data.label > 0).sum()) * float(np.prod(data.spacing)) / 1000.0
    return pd.Series(out, name="wt_ml", dtype=float)


def drop_by_volume(results: pd.DataFrame, cell: str, volumes: pd.Series) -> dict[str, Any]:
    """Per case of ``cell``: WT volume, clean and adversarial WT Dice, relative drop; and the Spearman ρ between
    volume and drop (None with fewer than three cases or a constant column)."""
    rows = results[(results["cell"] == cell) & (results["metric"] == "dice") & (results["region"] == "WT")]
    rows = rows.set_index("case").sort_index()
    drop = (rows["clean"] - rows["adversarial"]) / rows["clean"].where(rows["clean"] > 0)
    by_case = [{"case": c, "wt_ml": float(volumes[c]), "clean": float(rows.at[c, "clean"]),
                "adversarial": float(rows.at[c, "adversarial"]), "rel_drop": float(drop[c])} for c in rows.index]
    ok = drop.notna()
    vol, d = volumes[drop.index[ok]].to_numpy(), drop[ok].to_numpy()
    rho = (float(spearmanr(vol, d).statistic) if len(d) >= 3 and np.ptp(vol) > 0 and np.ptp(d) > 0 else None)
    return {"by_case": by_case, "spearman_rho_volume_drop": rho}


def _gradient(cell: Cell) -> str:
    return str(cell.window.get("gradient", "exact"))


def eps_reaching_half(summary: pd.DataFrame, cells: Sequence[Cell]) -> float | None:
    """The smallest ε of an exact-gradient PGD cell (any steps) whose mean relative WT Dice drop is ≥ 50 %."""
    hits = [float(c.options["eps"]) for c in cells
            if c.attack == "pgd" and _gradient(c) == "exact" and "eps" in c.options
            and summary_value(summary, c.id, "WT", "dice", "rel_degradation") >= 0.5]
    return min(hits) if hits else None


def add_matched_noise(cfg: RunConfig, res: RunResult) -> dict[str, float]:
    """Append one noise attack per VAFA cell to ``cfg``, σ matched to that cell's mean SSIM; returns
    {vafa cell: σ}."""
    assert res.tables is not None
    matched: dict[str, float] = {}
    volumes: dict[str, tuple[list[torch.Tensor], list[int]]] = {}
    for c in res.cells:
        if not c.attack.startswith("vafa"):
            continue
        if c.source not in volumes:
            volumes[c.source] = clean_volumes(cfg, res, c.source)
        target = float(per_case(res.tables.results, c.id, "ssim").mean())
        matched[c.id] = round(sigma_for_ssim(*volumes[c.source], target, tolerance=1e-5), 3)
    have = {e for a in cfg.attacks if a.attack == "gaussian_noise" and not a.options for e in a.eps or []}
    new = sorted(set(matched.values()) - have)
    if new:
        spec = AttackSpec(attack="gaussian_noise", eps=new)
        check_attack(spec, f"attacks[{len(cfg.attacks)}] (matched noise)")
        cfg.attacks.append(spec)
    return matched


def _budget(cell: Cell) -> str:
    if "eps" in cell.options:
        return f"ε={cell.options['eps']:g}"
    return f"{cell.budget_key}={cell.budget:g}" if cell.budget_key else "–"


def table_rows(results: pd.DataFrame, summary: pd.DataFrame, cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per cell: Dice per region clean and adversarial, relative WT drop, WT HD95 (the official BraTS
    definition, hd95_brats, when the run has it; else MONAI's hd95), SSIM, L∞, seconds."""
    hd = "hd95_brats" if (summary["metric"] == "hd95_brats").any() else "hd95"
    rows = []
    for c in cells:
        rows.append({
            "cell": c.id, "attack": c.attack, "crafted_with": _gradient(c), "budget": _budget(c),
            "steps": c.options.get("steps", 1 if c.attack == "fgsm" else None),
            **{f"{r}_dice": summary_value(summary, c.id, r, "dice", "adversarial_mean") for r in REGIONS},
            **{f"clean_{r}_dice": summary_value(summary, c.id, r, "dice", "clean_mean") for r in REGIONS},
            "WT_rel_drop": summary_value(summary, c.id, "WT", "dice", "rel_degradation"),
            "WT_hd95": summary_value(summary, c.id, "WT", hd, "adversarial_mean"),
            "ssim": float(per_case(results, c.id, "ssim").mean()),
            "linf_255": float(per_case(results, c.id, "linf_255").max()),
            "seconds_per_case": float(per_case(results, c.id, "seconds").mean()),
        })
    return rows


def _find(cells: Sequence[Cell], attack: str, gradient: str, **options: Any) -> Cell | None:
    for c in cells:
        if c.attack == attack and _gradient(c) == gradient and all(c.options.get(k) == v for k, v in options.items()):
            return c
    return None


def checks(results: pd.DataFrame, summary: pd.DataFrame, flags: Sequence[SanityFlag], cells: Sequence[Cell],
           matched: dict[str, float], volumes: pd.Series, *, eps: float = 8, steps: int = 20) -> list[dict[str, Any]]:
    """The four checks of the module docstring (PGD at ``eps``, ``steps``), each with its numbers and ``passed``
    (None: the grid has no such cells); ``volumes`` are the cases' WT volumes (:func:`wt_volumes_ml`)."""
    out: list[dict[str, Any]] = []
    what = f"PGD ε={eps:g}, {steps} steps"
    exact = _find(cells, "pgd", "exact", eps=eps, steps=steps)
    if exact is None:
        out.append({"check": "pgd_drop", "passed": None, "text": f"no exact {what} cell"})
    else:
        clean = summary_value(summary, exact.id, "WT", "dice", "clean_mean")
        adv = summary_value(summary, exact.id, "WT", "dice", "adversarial_mean")
        rel = summary_value(summary, exact.id, "WT", "dice", "rel_degradation")
        sizes = drop_by_volume(results, exact.id, volumes)
        half = eps_reaching_half(summary, cells)
        rho = sizes["spearman_rho_volume_drop"]
        out.append({"check": "pgd_drop", "passed": bool(rel >= 0.5), "cell": exact.id, "clean": clean,
                    "adversarial": adv, "rel_drop": rel, **sizes, "eps_reaching_half": half,
                    "text": f"{what} (exact): mean WT Dice {clean:.3f} → {adv:.3f}, a {rel:.1%} relative drop "
                            f"(needs ≥ 50 %). Spearman ρ between tumour volume and drop: {_fmt(rho, '+.2f')}; the "
                            f"smallest exact-PGD ε of this grid with a mean drop ≥ 50 %: "
                            f"{'none' if half is None else f'{half:g}'}"})
    for vafa_id, sigma in matched.items():
        noise = next(c for c in cells if c.attack == "gaussian_noise" and c.options.get("eps") == sigma)
        v, n = wt_dice(results, vafa_id), wt_dice(results, noise.id)
        p = float(wilcoxon(v, n, alternative="less").pvalue) if (v != n).any() else 1.0
        ssim_v = float(per_case(results, vafa_id, "ssim").mean())
        ssim_n = float(per_case(results, noise.id, "ssim").mean())
        out.append({"check": "vafa_beats_matched_noise", "cell": vafa_id, "noise_cell": noise.id,
                    "passed": bool(v.mean() < n.mean()), "vafa_wt": float(v.mean()), "noise_wt": float(n.mean()),
                    "noise_sigma_255": sigma, "ssim_vafa": ssim_v, "ssim_noise": ssim_n, "wilcoxon_p_one_sided": p,
                    "text": f"{vafa_id}: WT Dice {v.mean():.3f} (SSIM {ssim_v:.4f}) vs noise σ={sigma:g}/255 "
                            f"{n.mean():.3f} (SSIM {ssim_n:.4f}); paired Wilcoxon p={p:.3g} (n={len(v)})"})
    tiles = _find(cells, "pgd", "tiles", eps=eps, steps=steps)
    if exact is None or tiles is None:
        out.append({"check": "exact_at_least_tiles", "passed": None, "text": "no exact/tiles PGD pair"})
    else:
        e, t = wt_dice(results, exact.id), wt_dice(results, tiles.id)
        out.append({"check": "exact_at_least_tiles", "passed": bool(e.mean() <= t.mean()),
                    "exact_wt": float(e.mean()), "tiles_wt": float(t.mean()),
                    "cases_exact_stronger": int((e < t).sum()), "cases": len(e),
                    "text": f"{what}: WT Dice {e.mean():.3f} (exact full volume) vs {t.mean():.3f} "
                            f"(tiles); exact lower on {(e < t).sum()} of {len(e)} cases"})
    raised = [f.name for f in flags if f.raised]
    out.append({"check": "sanity_flags_clear", "passed": not raised, "raised": raised,
                "text": format_flags(flags).replace("\n", " ")})
    return out


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def _model_text(cfg: RunConfig) -> str:
    return ", ".join(f"`{m.name}` ({Path(m.checkpoint).name if m.checkpoint else m.model})" for m in cfg.models)


def markdown(cfg: RunConfig, rows: list[dict[str, Any]], results: list[dict[str, Any]], command: str,
             seconds: float, n_cases: int, out: str | Path) -> str:
    clean = rows[0]
    lines = [
        "# Attack strength on the synthetic demo model", "",
        "Produced by (from the repository root, after README command 1, `bash scripts/demo.sh`):", "",
        "```", command, "```", "",
        f"The grid runs on the experiment engine (`docs/engine.md`): `{shown_path(out)}` is a `volrob robustness` run "
        "folder (`results.csv`, `summary.csv`, `sanity.json`, `run.json`, one file per unit of work in `units/`), so "
        "a rerun resumes and `volrob robustness` can continue it. The table is read from `summary.csv` "
        "(`clean_mean`, `adversarial_mean`, `rel_degradation` of each cell's Dice and HD95 rows) and `results.csv` "
        "(`ssim`, `linf_255`, `seconds` per case).", "",
        f"Model: {_model_text(cfg)}; split `{cfg.split}` ({n_cases} cases), seed {cfg.seed}. Threat model: L∞ in the "
        "per-channel [0, 1] attack space, ε in 1/255, brain mask. Loss: the attacks' default (Dice + BCE for the "
        "sigmoid region outputs). Every cell is scored with the checkpoint's overlapping gaussian sliding window on "
        "the source grid; \"crafted with\" says how the attack formed its gradient (exact full-volume windowed "
        "gradient, or the published tile protocol). Mean over cases; HD95 in mm; SSIM of adversarial vs clean "
        "input; L∞ the largest over cases.", "",
        f"Clean mean Dice: TC {clean['clean_TC_dice']:.3f}, WT {clean['clean_WT_dice']:.3f}, "
        f"ET {clean['clean_ET_dice']:.3f}.", "",
        "| attack | crafted with | budget | steps | TC Dice | WT Dice | ET Dice | WT drop | WT HD95 | SSIM | L∞ "
        "| s / case |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['attack']} | {r['crafted_with']} | {r['budget']} | {_fmt(r['steps'], 'd')} | "
                     f"{r['TC_dice']:.3f} | {r['WT_dice']:.3f} | {r['ET_dice']:.3f} | {r['WT_rel_drop']:.1%} | "
                     f"{r['WT_hd95']:.2f} | {r['ssim']:.4f} | {r['linf_255']:.1f} | {r['seconds_per_case']:.1f} |")
    sizes = next((c for c in results if c["check"] == "pgd_drop" and "by_case" in c), None)
    if sizes is not None:
        lines += ["", f"## Drop per case ({sizes['cell']})", "",
                  "Relative WT Dice drop against the ground-truth whole-tumour volume of each case:", "",
                  "| case | WT volume (mL) | clean WT Dice | adversarial WT Dice | drop |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['case']} | {r['wt_ml']:.1f} | {r['clean']:.3f} | {r['adversarial']:.3f} | "
                  f"{_fmt(r['rel_drop'], '.1%')} |" for r in sorted(sizes["by_case"], key=lambda r: r["wt_ml"])]
    lines += ["", "## Checks", ""]
    for c in results:
        verdict = {True: "**pass**", False: "**FAIL**", None: "not run"}[c["passed"]]
        lines.append(f"- {c['check']}: {verdict}. {c['text']}")
    lines += ["", f"Run time of this invocation: {seconds:.0f} s on {os.cpu_count()} CPU core(s), torch "
              f"{torch.__version__} (units already finished are reused, not timed again).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/robustness/attack_table.yaml")
    ap.add_argument("-o", "--out", required=True, help="run folder (reused to resume)")
    ap.add_argument("--doc", help="write the Markdown table here (atomically)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--eps", type=float, default=8.0, help="PGD budget of checks 1 and 3 (1/255 units)")
    ap.add_argument("--steps", type=int, default=20, help="PGD steps of checks 1 and 3")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        cfg = load_run_config(args.config, args.overrides)
        if cfg.transfer or cfg.roi_crop is not None:
            raise ConfigError("the attack table is a white-box grid on whole volumes (transfer: false, no roi_crop)",
                              path=args.config)
        if not cfg.attacks:
            raise ConfigError("attacks: the grid has no attacks", path=args.config)
        first = run_grid(cfg, args.out, quiet=args.quiet)
        matched = add_matched_noise(cfg, first)
        res = run_grid(cfg, args.out, quiet=args.quiet)
        assert res.tables is not None and res.outputs is not None
        results, summary = res.tables.results, res.outputs.summary
        rows = table_rows(results, summary, res.cells)
        volumes = wt_volumes_ml(cfg, res.cases)
        report = checks(results, summary, res.outputs.flags, res.cells, matched, volumes, eps=args.eps,
                        steps=args.steps)
        seconds = time.perf_counter() - start
        if args.doc:
            command = "python scripts/attack_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
            atomic_write_text(args.doc, markdown(cfg, rows, report, command, seconds, len(res.cases), args.out))
    except VolrobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"checks": report, "rows": rows, "computed_now": first.computed + res.computed,
                      "seconds": round(seconds, 1)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
