"""VAFA protocol table: volrob's default VAFA beside the published code's protocol, on one model.

    python scripts/vafa_protocol.py --config configs/robustness/vafa_protocol.yaml -o runs/demo/vafa_protocol \
        --doc docs/vafa_protocol.md

Runs the white-box grid of ``--config`` (VAFA cells only) with the engine (:func:`volrob.engine.kernel.run_experiment`,
command ``robustness``: resumable, finished units are reused, and ``volrob robustness`` can continue the same
folder) and writes one Markdown row per cell: the protocol options the attack recorded (``ssim`` and its window,
``output_rescale``, ``rescale_in_loop``), mean Dice per region, the relative WT Dice drop, the achieved L∞ (largest
and mean over cases, 1/255 units; measured by the engine on the returned input, so after any rescale), the volume
SSIM the engine measures for every attack (gaussian window 7), the per-block SSIM the attack records (the published
measure) and seconds per case. Everything is read from the run's tables (``summary.csv``, ``results.csv`` and the
attack records in the unit files). Prints one JSON object with the rows.
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

import pandas as pd
import torch

from volrob.engine.cells import Cell
from volrob.engine.config import RunConfig, load_run_config
from volrob.engine.kernel import RunResult, run_complete
from volrob.errors import ConfigError, DataError, VolrobError
from volrob.io import atomic_write_text, shown_path

REGIONS = ("TC", "WT", "ET")
COMMAND = "robustness"
"""The engine command the grid runs as: the folder can be resumed with ``volrob robustness`` as well."""


def echo_for(quiet: bool) -> Callable[[str], None]:
    """Where the engine's plan lines go: stderr (stdout carries the JSON report), or nowhere with ``--quiet``."""
    return (lambda _text: None) if quiet else (lambda text: print(text, file=sys.stderr))


def check_grid(cfg: RunConfig, path: str | Path) -> None:
    """ConfigError unless ``cfg`` is a white-box grid on whole volumes whose attacks are all VAFA."""
    if cfg.transfer or cfg.roi_crop is not None:
        raise ConfigError("the VAFA protocol table is a white-box grid on whole volumes (transfer: false, no "
                          "roi_crop)", path=path)
    if not cfg.attacks:
        raise ConfigError("attacks: the grid has no attacks", path=path)
    other = sorted({a.attack for a in cfg.attacks if a.attack not in ("vafa3d", "vafa2d")})
    if other:
        raise ConfigError(f"attacks: the VAFA protocol table takes vafa3d/vafa2d cells only, got {other}", path=path)


def run_grid(cfg: RunConfig, out: str | Path, *, quiet: bool) -> RunResult:
    """Run (or resume) ``cfg`` white-box into ``out``; DataError when any unit failed (a rerun retries it)."""
    return run_complete(cfg, out, command=COMMAND, progress=not quiet, echo=echo_for(quiet))


def summary_value(summary: pd.DataFrame, cell: str, region: str, metric: str, column: str) -> float:
    """One number of ``summary.csv`` (a white-box cell: one scored model)."""
    row = summary[(summary["cell"] == cell) & (summary["region"] == region) & (summary["metric"] == metric)]
    if row.empty:
        raise DataError(f"summary: no {region} {metric} row for cell {cell}")
    return float(row[column].iloc[0])


def per_case(results: pd.DataFrame, cell: str, column: str) -> pd.Series:
    """One value of ``column`` per case of ``cell`` (perturbation columns repeat over regions and metrics)."""
    return results[results["cell"] == cell].groupby("case")[column].first()


def cell_records(records: dict[str, dict[str, Any]], cell: str) -> list[dict[str, Any]]:
    """The attack records of ``cell``'s units (keyed ``cell/case`` by the engine), in case order."""
    return [records[k] for k in sorted(records) if k.split("/", 1)[0] == cell]


def protocol_of(params: dict[str, Any]) -> dict[str, Any]:
    """The protocol options an attack recorded, and a short name for the combination."""
    ssim, rescale, in_loop = params["ssim"], params["output_rescale"], bool(params["rescale_in_loop"])
    if ssim == "volume" and rescale == "none":
        name = "volrob default"
    elif ssim == "per_block" and rescale != "none" and in_loop:
        name = "published protocol"
    else:
        parts = ["per-block SSIM" if ssim == "per_block" else "volume SSIM"]
        if rescale != "none":
            parts.append("rescale in every step" if in_loop else "rescale of the output only")
        name = " + ".join(parts)
    return {"protocol": name, "ssim": ssim, "ssim_window": params["ssim_window"], "output_rescale": rescale,
            "rescale_in_loop": in_loop if rescale != "none" else None, "rescale_axis": params["rescale_axis"],
            "steps": params["steps"], "q_max": params["q_max"], "block": params["block"]}


def table_rows(results: pd.DataFrame, summary: pd.DataFrame, records: dict[str, dict[str, Any]],
               cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per cell: protocol options (from the attack records), Dice, WT drop, L∞, both SSIMs, time."""
    rows = []
    for c in cells:
        recs = cell_records(records, c.id)
        if not recs:
            raise DataError(f"cell {c.id} has no attack records")
        per_block = [v for r in recs for v in (r.get("ssim_per_block") or [])]
        linf = per_case(results, c.id, "linf_255")
        rows.append({
            "cell": c.id, "attack": c.attack, **protocol_of(recs[0]["params"]),
            **{f"{r}_dice": summary_value(summary, c.id, r, "dice", "adversarial_mean") for r in REGIONS},
            **{f"clean_{r}_dice": summary_value(summary, c.id, r, "dice", "clean_mean") for r in REGIONS},
            "WT_rel_drop": summary_value(summary, c.id, "WT", "dice", "rel_degradation"),
            "linf_255_max": float(linf.max()), "linf_255_mean": float(linf.mean()),
            "ssim_volume": float(per_case(results, c.id, "ssim").mean()),
            "ssim_per_block": sum(per_block) / len(per_block) if per_block else None,
            "seconds_per_case": float(per_case(results, c.id, "seconds").mean()),
        })
    return rows


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def _rescale_text(r: dict[str, Any]) -> str:
    if r["output_rescale"] == "none":
        return "none"
    return f"{r['output_rescale']} (axis {r['rescale_axis']}, {'every step' if r['rescale_in_loop'] else 'output'})"


def readings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Sentences comparing each cell with the volrob default (the first such row), from the table's numbers."""
    base = next((r for r in rows if r["protocol"] == "volrob default"), None)
    if base is None:
        return []
    out = []
    for r in rows:
        if r is base:
            continue
        out.append(f"- {r['protocol']}: WT Dice {r['WT_dice']:.3f} against {base['WT_dice']:.3f} for the default "
                   f"(relative drop {r['WT_rel_drop']:.1%} against {base['WT_rel_drop']:.1%}); largest L∞ "
                   f"{r['linf_255_max']:.1f}/255 against {base['linf_255_max']:.1f}/255; volume SSIM "
                   f"{r['ssim_volume']:.4f} against {base['ssim_volume']:.4f}.")
    return out


def markdown(cfg: RunConfig, rows: list[dict[str, Any]], command: str, seconds: float, n_cases: int,
             out: str | Path, setup: str, load: tuple[float, float] = (0.0, 0.0)) -> str:
    """The document: how it was made, the table, what each option does, and the readings; ``load``: the 1-minute
    load average at the start and end of this invocation."""
    first = rows[0]
    attack_seconds = sum(r["seconds_per_case"] for r in rows) * n_cases
    models = ", ".join(f"`{m.name}` ({Path(m.checkpoint).name if m.checkpoint else m.model})" for m in cfg.models)
    lines = [
        "# VAFA: volrob's default against the published code's protocol", "",
        "Produced by (from the repository root):", "", "```", command, "```", "",
        setup, "",
        f"Model: {models}; split `{cfg.split}`, {n_cases} case(s), seed {cfg.seed}. Every cell: `vafa3d`, "
        f"{first['steps']} steps (the paper uses 20; fewer here to fit a 2-core CPU), q_max {first['q_max']:g}, "
        f"blocks {'×'.join(str(b) for b in first['block'])}, the attack's default loss, brain mask, exact "
        "full-volume windowed gradient. The grid runs on the experiment engine (`docs/engine.md`): "
        f"`{shown_path(out)}` is a `volrob robustness` run folder, so a rerun resumes. Dice is scored with the "
        "checkpoint's overlapping gaussian sliding window on the source grid; mean over cases.", "",
        f"Clean mean Dice: TC {first['clean_TC_dice']:.3f}, WT {first['clean_WT_dice']:.3f}, "
        f"ET {first['clean_ET_dice']:.3f}.", "",
        "| protocol | SSIM term | output rescale | TC Dice | WT Dice | ET Dice | WT drop | L∞ max | L∞ mean "
        "| SSIM (volume) | SSIM (per block) | s / case |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['ssim']} (window {r['ssim_window']}) | {_rescale_text(r)} | "
                     f"{r['TC_dice']:.3f} | {r['WT_dice']:.3f} | {r['ET_dice']:.3f} | {r['WT_rel_drop']:.1%} | "
                     f"{r['linf_255_max']:.1f} | {r['linf_255_mean']:.1f} | {r['ssim_volume']:.4f} | "
                     f"{_fmt(r['ssim_per_block'], '.4f')} | {r['seconds_per_case']:.1f} |")
    lines += [
        "", "Columns: L∞ in 1/255 units of the [0, 1] attack space, measured by the engine on the input the attack "
        "returned (after the rescale, where there is one). SSIM (volume): the engine's measure for every attack "
        "(3D gaussian window of 7, σ 1.5, mean over channels and positions). SSIM (per block): the published "
        "code's measure, recorded by the attack (SSIM inside each block of the DCT block size, gaussian window of "
        "3, σ 1.5, block means clamped at 0, then averaged). The SSIM term column names the measure inside the "
        "attack's objective (weight 1).", "",
        "## The options", "",
        "- `ssim: per_block` (`ssim_window` 3 by default; `ssim_block` defaults to the DCT block): the published "
        "SSIM term. `ssim: volume` (window 7) is volrob's default.",
        "- `output_rescale: per_slice_minmax`: the published code's last step, not in the paper. Every slice along "
        "`rescale_axis` (default the last spatial axis, tensor dimension 4 of (B, C, D, H, W): the axis the "
        "published code slices along, axial for RAS-oriented volumes) of every channel is mapped onto the valid "
        "range [0, 1] by its own minimum and maximum; constant slices (such as all-background slices) are left as "
        "they are (the published code divides by zero there). The rescale replaces the clip to [0, 1] and acts on "
        "whole slices: the brain mask does not apply to it, as in the published code, which knows none. No "
        "quantisation budget bounds it: a voxel can move by up to 255/255.",
        "- `rescale_in_loop: true` (default, as published): every iterate is rescaled before the model and the SSIM "
        "term see it, and the gradient flows through the rescale. `false`: the tables are optimised exactly as in "
        "the default attack and only the returned input is rescaled, which isolates what the rescale alone does.",
        "", "## Paper, published code and volrob", "",
        "| step | paper | published code (asif-hanif/vafa) | volrob default | volrob option |",
        "| --- | --- | --- | --- | --- |",
        "| quantisation tables | start at 1, clipped to [1, q_max] | start at q_max, clipped to [5, q_max] "
        "| start at q_max, clipped to [5, q_max] | `q_min` (the start at 1 is not offered) |",
        "| SSIM term | an SSIM term (weight 1) | per block of the DCT block size, gaussian window 3 (σ 1.5), "
        "block means clamped at 0 | whole volume, gaussian window 7 (σ 1.5) | `ssim: per_block`, `ssim_window`, "
        "`ssim_block` |",
        "| output | quantised volume | every slice along the last axis rescaled to [0, 1] by its own min and max "
        "(also in every step) | clipped to [0, 1], unchanged outside the brain mask | `output_rescale`, "
        "`rescale_axis`, `rescale_in_loop` |",
        "| DCT input | – | blocks shifted by −128 | no shift (only the DC coefficient's quantisation differs) "
        "| not offered |",
        "| returned input | – | the last soft-rounded iterate | hard rounding with the final tables | not offered |",
        "", "The published attack class's own defaults (8³ blocks, q_max 10, SSIM term off) differ from the paper's "
        "main setting (32³ blocks, q_max 20, SSIM on), which is what volrob's `vafa3d` defaults to. Every option "
        "above is recorded in each unit's attack record (`params`), and the rescale is named in the record's "
        "threat budget.",
        "", "## Readings", "", *readings(rows), "",
        "This is synthetic data and a small model: the numbers show how much the published post-processing "
        "changes an attack's measured effect and its actual distance, not how VAFA fares on BraTS.", "",
        f"Attack time summed over the grid's units: {attack_seconds:.0f} s ({attack_seconds / 60:.1f} min) on "
        f"{os.cpu_count()} CPU core(s), torch {torch.__version__}; this invocation: {seconds:.0f} s (units already "
        f"finished are reused, not timed again); load average {load[0]:.1f} at its start and {load[1]:.1f} at its "
        "end (other jobs sharing the cores make every time longer).", "",
    ]
    return "\n".join(lines)


DEFAULT_SETUP = ("Data and model: synthetic BraTS-like data and the small demo UNet made by `bash scripts/demo.sh` "
                 "(`volrob synth`: 30 cases of 96³, seed 0, 21 train / 3 validation / 6 test; `volrob train "
                 "configs/unet.yaml`: MONAI residual UNet, channels 16/32/64/128, 30 epochs, seed 0; see "
                 "`docs/demo/report.md`).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/robustness/vafa_protocol.yaml")
    ap.add_argument("-o", "--out", required=True, help="run folder (reused to resume)")
    ap.add_argument("--doc", help="write the Markdown table here (atomically)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--setup", default=DEFAULT_SETUP, help="the document's sentence on the data and the model")
    ap.add_argument("--command", help="the command line the document names (default: this script's own)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    try:
        cfg = load_run_config(args.config, args.overrides)
        check_grid(cfg, args.config)
        res = run_grid(cfg, args.out, quiet=args.quiet)
        assert res.tables is not None and res.outputs is not None
        rows = table_rows(res.tables.results, res.outputs.summary, res.tables.records, res.cells)
        seconds = time.perf_counter() - start
        if args.doc:
            command = args.command or "python scripts/vafa_protocol.py " + " ".join(
                argv if argv is not None else sys.argv[1:])
            atomic_write_text(args.doc, markdown(cfg, rows, command, seconds, len(res.cases), args.out, args.setup,
                                                 (load_start, os.getloadavg()[0])))
    except VolrobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"rows": rows, "computed_now": res.computed, "seconds": round(seconds, 1)}, indent=2,
                     default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
