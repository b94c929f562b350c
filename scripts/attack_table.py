"""Attack-strength table: PGD, FGSM, VAFA, the tile protocol and SSIM-matched noise on one model, with checks.

    python scripts/attack_table.py --config configs/robustness/attack_table.yaml -o runs/demo/attack_table \
        --doc docs/attack_table.md

Runs the robustness grid of ``--config`` (resumable: finished cells are reused), then for every VAFA cell finds the
Gaussian-noise σ whose mean SSIM on the same cases equals the VAFA cell's, runs that noise as one more cell, and
writes a Markdown table plus four checks to ``--doc``:

1. PGD L∞ ε=8, 20 steps (exact full-volume gradient; ``--eps``/``--steps``) lowers mean WT Dice by at least 50 %
   (relative). The check also reports what the drop depends on: per case, the ground-truth whole-tumour volume
   against the relative drop (Spearman ρ), and the smallest exact-PGD ε of the grid whose mean drop reaches 50 %;
2. each VAFA cell lowers WT Dice more than noise of the same SSIM (paired one-sided Wilcoxon over cases);
3. the exact full-volume PGD is at least as strong as the tile protocol at the same ε and steps;
4. the grid's sanity flags are clear.

Prints one JSON object (the checks and the table rows). Everything is seeded by the grid config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr, wilcoxon

from volrob.data.cases import load_case
from volrob.data.manifest import labelled_cases, load_manifest
from volrob.data.preprocess import preprocess
from volrob.errors import DataError, VolrobError
from volrob.io import atomic_write_text
from volrob.robustness.attack_run import case_seed
from volrob.robustness.calibrate import sigma_for_ssim
from volrob.robustness.grid import AttackSpec, GridConfig, GridResult, load_grid_config, run_grid
from volrob.robustness.model_source import ModelSource
from volrob.robustness.sanity import format_flags

REGIONS = ("TC", "WT", "ET")


def clean_volumes(cfg: GridConfig, checkpoint: str) -> tuple[list[torch.Tensor], list[int], list[str]]:
    """Preprocessed clean inputs of the grid's split for ``checkpoint``, their attack seeds and case ids."""
    src = ModelSource.from_checkpoint(checkpoint)
    man = load_manifest(cfg.manifest)
    cases = labelled_cases(man, cfg.split, src.modalities)
    vols = []
    for case in cases:
        data = load_case(man, case)
        vols.append(preprocess(data.image, None, data.affine, src.preprocessing).image.as_tensor()[None].float())
    return vols, [case_seed(cfg.seed, c.id) for c in cases], [c.id for c in cases]


def per_case(results: pd.DataFrame, cell: str, column: str) -> pd.Series:
    """One value of ``column`` per case of ``cell`` (perturbation columns repeat over regions and metrics)."""
    return results[results["cell"] == cell].groupby("case")[column].first()


def wt_dice(results: pd.DataFrame, cell: str) -> pd.Series:
    rows = results[(results["cell"] == cell) & (results["metric"] == "dice") & (results["region"] == "WT")]
    return rows.set_index("case")["adversarial"].sort_index()


def wt_volumes_ml(cfg: GridConfig, cases: list[str]) -> pd.Series:
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
    per_case = [{"case": c, "wt_ml": float(volumes[c]), "clean": float(rows.at[c, "clean"]),
                 "adversarial": float(rows.at[c, "adversarial"]), "rel_drop": float(drop[c])} for c in rows.index]
    ok = drop.notna()
    vol, d = volumes[drop.index[ok]].to_numpy(), drop[ok].to_numpy()
    rho = (float(spearmanr(vol, d).statistic) if len(d) >= 3 and np.ptp(vol) > 0 and np.ptp(d) > 0 else None)
    return {"by_case": per_case, "spearman_rho_volume_drop": rho}


def eps_reaching_half(res: GridResult, cells: list[dict[str, Any]]) -> float | None:
    """The smallest ε of an exact-gradient PGD cell (any steps) whose mean relative WT drop is ≥ 50 %."""
    hits = []
    for c in cells:
        if c["attack"] == "pgd" and c["window"].get("gradient", "exact") == "exact" and "eps" in c["options"]:
            wt = res.summary[(res.summary["cell"] == c["id"]) & (res.summary["region"] == "WT")]
            if not wt.empty and float(wt["rel_dice_drop"].iloc[0]) >= 0.5:
                hits.append(float(c["options"]["eps"]))
    return min(hits) if hits else None


def add_matched_noise(cfg: GridConfig, res: GridResult, cells: list[dict[str, Any]]) -> dict[str, float]:
    """Append one noise attack per VAFA cell, σ matched to that cell's mean SSIM; returns {vafa cell: σ}."""
    matched: dict[str, float] = {}
    volumes: dict[str, tuple[list[torch.Tensor], list[int]]] = {}
    for c in cells:
        if not c["attack"].startswith("vafa"):
            continue
        model = next(m for m in cfg.models if m.name == c["model"])
        if model.name not in volumes:
            vols, seeds, _ = clean_volumes(cfg, model.checkpoint)
            volumes[model.name] = (vols, seeds)
        target = float(per_case(res.results, c["id"], "ssim").mean())
        sigma = round(sigma_for_ssim(*volumes[model.name], target, tolerance=1e-5), 3)
        matched[c["id"]] = sigma
    new = sorted(set(matched.values()) - {e for a in cfg.attacks if a.attack == "gaussian_noise" for e in a.eps or []})
    if new:
        cfg.attacks.append(AttackSpec(attack="gaussian_noise", eps=new))
    return matched


def table_rows(res: GridResult, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in cells:
        summ = res.summary[res.summary["cell"] == c["id"]].set_index("region")
        opts = c["options"]
        budget = (f"ε={opts['eps']:g}" if "eps" in opts else
                  f"{c['budget_key']}={c['budget']:g}" if c["budget_key"] else "–")
        rows.append({
            "cell": c["id"], "attack": c["attack"], "crafted_with": c["window"].get("gradient", "exact"),
            "budget": budget, "steps": opts.get("steps", 1 if c["attack"] == "fgsm" else None),
            **{f"{r}_dice": float(summ.loc[r, "adversarial_dice"]) for r in REGIONS},
            **{f"clean_{r}_dice": float(summ.loc[r, "clean_dice"]) for r in REGIONS},
            "WT_rel_drop": float(summ.loc["WT", "rel_dice_drop"]),
            "WT_hd95": float(summ.loc["WT", "adversarial_hd95"]),
            "ssim": float(per_case(res.results, c["id"], "ssim").mean()),
            "linf_255": float(per_case(res.results, c["id"], "linf_255").max()),
            "seconds_per_case": float(per_case(res.results, c["id"], "attack_seconds").mean()),
        })
    return rows


def _find(cells: list[dict[str, Any]], attack: str, gradient: str, **options: Any) -> dict[str, Any] | None:
    for c in cells:
        if (c["attack"] == attack and c["window"].get("gradient", "exact") == gradient
                and all(c["options"].get(k) == v for k, v in options.items())):
            return c
    return None


def checks(res: GridResult, cells: list[dict[str, Any]], matched: dict[str, float], volumes: pd.Series, *,
           eps: float = 8, steps: int = 20) -> list[dict[str, Any]]:
    """The four checks of the module docstring (PGD at ``eps``, ``steps``), each with its numbers and ``passed``
    (None: the grid has no such cells); ``volumes`` are the cases' WT volumes (:func:`wt_volumes_ml`)."""
    out: list[dict[str, Any]] = []
    what = f"PGD ε={eps:g}, {steps} steps"
    exact = _find(cells, "pgd", "exact", eps=eps, steps=steps)
    if exact is None:
        out.append({"check": "pgd_drop", "passed": None, "text": f"no exact {what} cell"})
    else:
        wt = res.summary[(res.summary["cell"] == exact["id"]) & (res.summary["region"] == "WT")].iloc[0]
        sizes = drop_by_volume(res.results, exact["id"], volumes)
        half = eps_reaching_half(res, cells)
        rho = sizes["spearman_rho_volume_drop"]
        out.append({"check": "pgd_drop", "passed": bool(wt["rel_dice_drop"] >= 0.5), "cell": exact["id"],
                    "clean": float(wt["clean_dice"]), "adversarial": float(wt["adversarial_dice"]),
                    "rel_drop": float(wt["rel_dice_drop"]), **sizes, "eps_reaching_half": half,
                    "text": f"{what} (exact): mean WT Dice {wt['clean_dice']:.3f} → {wt['adversarial_dice']:.3f}, "
                            f"a {wt['rel_dice_drop']:.1%} relative drop (needs ≥ 50 %). Spearman ρ between "
                            f"tumour volume and drop: {_fmt(rho, '+.2f')}; the smallest exact-PGD ε of this grid "
                            f"with a mean drop ≥ 50 %: {'none' if half is None else f'{half:g}'}"})
    for vafa_id, sigma in matched.items():
        noise = next(c for c in cells if c["attack"] == "gaussian_noise" and c["options"].get("eps") == sigma)
        v, n = wt_dice(res.results, vafa_id), wt_dice(res.results, noise["id"])
        p = float(wilcoxon(v, n, alternative="less").pvalue) if (v != n).any() else 1.0
        ssim_v = float(per_case(res.results, vafa_id, "ssim").mean())
        ssim_n = float(per_case(res.results, noise["id"], "ssim").mean())
        out.append({"check": "vafa_beats_matched_noise", "cell": vafa_id, "passed": bool(v.mean() < n.mean()),
                    "vafa_wt": float(v.mean()), "noise_wt": float(n.mean()), "noise_sigma_255": sigma,
                    "ssim_vafa": ssim_v, "ssim_noise": ssim_n, "wilcoxon_p_one_sided": p,
                    "text": f"{vafa_id}: WT Dice {v.mean():.3f} (SSIM {ssim_v:.4f}) vs noise σ={sigma:g}/255 "
                            f"{n.mean():.3f} (SSIM {ssim_n:.4f}); paired Wilcoxon p={p:.3g} (n={len(v)})"})
    tiles = _find(cells, "pgd", "tiles", eps=eps, steps=steps)
    if exact is None or tiles is None:
        out.append({"check": "exact_at_least_tiles", "passed": None, "text": "no exact/tiles PGD pair"})
    else:
        e, t = wt_dice(res.results, exact["id"]), wt_dice(res.results, tiles["id"])
        out.append({"check": "exact_at_least_tiles", "passed": bool(e.mean() <= t.mean()),
                    "exact_wt": float(e.mean()), "tiles_wt": float(t.mean()),
                    "cases_exact_stronger": int((e < t).sum()), "cases": len(e),
                    "text": f"{what}: WT Dice {e.mean():.3f} (exact full volume) vs {t.mean():.3f} "
                            f"(tiles); exact lower on {(e < t).sum()} of {len(e)} cases"})
    raised = [f.name for f in res.flags if f.raised]
    out.append({"check": "sanity_flags_clear", "passed": not raised, "raised": raised,
                "text": format_flags(res.flags)})
    return out


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def markdown(cfg: GridConfig, rows: list[dict[str, Any]], results: list[dict[str, Any]], command: str,
             seconds: float, n_cases: int) -> str:
    clean = rows[0]
    lines = [
        "# Attack strength on the synthetic demo model", "",
        "Produced by (from the repository root, after README command 1, `bash scripts/demo.sh`):", "",
        "```", command, "```", "",
        f"Model: {', '.join(f'`{m.name}` ({Path(m.checkpoint).name})' for m in cfg.models)}; split `{cfg.split}` "
        f"({n_cases} cases), seed {cfg.seed}. Threat model: L∞ in the per-channel [0, 1] attack space, ε in 1/255, "
        "brain mask. Loss: the attacks' default (Dice + BCE for the sigmoid region outputs). Every cell is scored "
        "with the checkpoint's overlapping gaussian sliding window on the source grid; \"crafted with\" says how "
        "the attack formed its gradient (exact full-volume windowed gradient, or the published tile protocol). "
        "Mean over cases; HD95 in mm; SSIM of adversarial vs clean input; L∞ the largest over cases.", "",
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
              f"{torch.__version__} (cells already finished are reused, not timed again).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/robustness/attack_table.yaml")
    ap.add_argument("-o", "--out", required=True, help="grid output folder (reused to resume)")
    ap.add_argument("--doc", help="write the Markdown table here (atomically)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--eps", type=float, default=8.0, help="PGD budget of checks 1 and 3 (1/255 units)")
    ap.add_argument("--steps", type=int, default=20, help="PGD steps of checks 1 and 3")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        cfg = load_grid_config(args.config, args.overrides)
        res = run_grid(cfg, args.out, progress=not args.quiet)
        grid_cells = json.loads((Path(args.out) / "grid.json").read_text(encoding="utf-8"))["cells"]
        matched = add_matched_noise(cfg, res, grid_cells)
        res = run_grid(cfg, args.out, progress=not args.quiet)
    except VolrobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cells = json.loads((Path(args.out) / "grid.json").read_text(encoding="utf-8"))["cells"]
    rows = table_rows(res, cells)
    try:
        volumes = wt_volumes_ml(cfg, sorted(res.results["case"].unique()))
    except VolrobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = checks(res, cells, matched, volumes, eps=args.eps, steps=args.steps)
    seconds = time.perf_counter() - start
    if args.doc:
        command = "python scripts/attack_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
        n_cases = int(res.results[res.results["cell"] == cells[0]["id"]]["case"].nunique())
        atomic_write_text(args.doc, markdown(cfg, rows, results, command, seconds, n_cases))
    print(json.dumps({"checks": results, "rows": rows, "seconds": round(seconds, 1)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
