"""Defence comparison table: a clean reference model and robust checkpoints under the same attacks, with checks.

    python scripts/defence_table.py --config configs/robustness/defence_table.yaml -o runs/demo/defence_table \
        --doc docs/defence_table.md

Runs the white-box grid of ``--config`` with the engine (:func:`volrob.engine.kernel.run_experiment`, command
``robustness``: resumable, finished units are reused, and ``volrob robustness`` can continue the same folder; it
needs two or more models and a reference), which writes comparison.csv / comparison.png, then writes a Markdown
table, the plot (next to ``--doc``, same name with ``.png``) and two checks, computed from the comparison rows:

A model "beats" the reference when its paired mean WT Dice margin is positive and consistent across cases
(one-sided paired Wilcoxon p < 0.05, ``--alpha``).

a. the model whose defence is ``pgd_at`` beats the reference under PGD ε=4 (``--eps``) in mean WT Dice while
   losing at most 0.05 (``--max-clean-loss``) mean clean WT Dice;
b. the model whose defence is ``vaft`` beats the reference under each VAFA setting in mean WT Dice.

With ``--control NAME`` (repeatable), each check also states its model's margin against a control: a model trained
without a defence on the same schedule (seed, data, starting checkpoint, training options, read from the
checkpoints), so the defence's share of a margin is told from the extra training's.

Prints one JSON object (the checks and the table rows). Everything is seeded by the grid config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from volrob.cli.inspect_cmd import defence_record
from volrob.engine.config import RunConfig, load_run_config
from volrob.engine.kernel import RunResult, run_experiment
from volrob.errors import ConfigError, DataError, VolrobError
from volrob.evaluation.compare import compare_models, resolve_reference, setting_label
from volrob.evaluation.controls import matched_controls, schedule_key
from volrob.io import atomic_write_text, shown_path
from volrob.report.compare_plot import plot_comparison

REGIONS = ("TC", "WT", "ET")


def _wt(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["region"] == "WT"]


def _ci(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:+.3f} [{row[key + '_ci_low']:+.3f}, {row[key + '_ci_high']:+.3f}]"


def check_pgd_at(table: pd.DataFrame, *, eps: float = 4, max_clean_loss: float = 0.05,
                 alpha: float = 0.05) -> list[dict[str, Any]]:
    """Check (a) for every model whose defence is pgd_at and every PGD setting at ``eps`` (passed None: none): a
    positive mean margin that is consistent across cases (one-sided paired Wilcoxon p < ``alpha``)."""
    wt = _wt(table)
    rows = wt[(wt["defence"] == "pgd_at") & (wt["attack"] == "pgd") & (wt["eps"] == eps)].to_dict("records")
    if not rows:
        return [{"check": "pgd_at_beats_reference", "passed": None,
                 "text": f"no pgd_at model with a PGD ε={eps:g} cell"}]
    out = []
    for r in rows:
        margin, clean_loss = float(r["diff_adversarial"]), -float(r["diff_clean"])
        passed = bool(margin > 0 and float(r["p_adversarial_greater"]) < alpha and clean_loss <= max_clean_loss)
        out.append({
            "check": "pgd_at_beats_reference", "passed": passed, "model": r["model"],
            "reference": r["reference"], "setting": r["setting"], "margin": margin,
            "margin_ci": [float(r["diff_adversarial_ci_low"]), float(r["diff_adversarial_ci_high"])],
            "p_one_sided": float(r["p_adversarial_greater"]), "clean_loss": clean_loss, "n": int(r["n_paired"]),
            "text": f"`{r['model']}` vs `{r['reference']}` under {setting_label(r)}: mean WT Dice margin "
                    f"{_ci(r, 'diff_adversarial')} (95 % bootstrap CI), one-sided paired Wilcoxon "
                    f"p={r['p_adversarial_greater']:.3g} (n={int(r['n_paired'])}, needs < {alpha:g}); clean WT "
                    f"Dice change {_ci(r, 'diff_clean')} (loss {clean_loss:.3f}, allowed ≤ {max_clean_loss:g})",
        })
    return out


def check_vaft(table: pd.DataFrame, *, alpha: float = 0.05) -> list[dict[str, Any]]:
    """Check (b) for every model whose defence is vaft and every VAFA setting (passed None: none): a positive mean
    margin, consistent across cases (one-sided paired Wilcoxon p < ``alpha``), as in check (a)."""
    wt = _wt(table)
    rows = wt[(wt["defence"] == "vaft") & wt["attack"].astype(str).str.startswith("vafa")].to_dict("records")
    if not rows:
        return [{"check": "vaft_beats_reference", "passed": None, "text": "no vaft model with a VAFA cell"}]
    return [{"check": "vaft_beats_reference", "model": r["model"],
             "passed": bool(r["diff_adversarial"] > 0 and float(r["p_adversarial_greater"]) < alpha),
             "reference": r["reference"], "setting": r["setting"], "margin": float(r["diff_adversarial"]),
             "p_one_sided": float(r["p_adversarial_greater"]), "n": int(r["n_paired"]),
             "text": f"`{r['model']}` vs `{r['reference']}` under {setting_label(r)}: mean WT Dice margin "
                     f"{_ci(r, 'diff_adversarial')}, one-sided paired Wilcoxon p={r['p_adversarial_greater']:.3g} "
                     f"(n={int(r['n_paired'])}, needs < {alpha:g})"} for r in rows]


def against_control(checks: list[dict[str, Any]], control_tables: dict[str, pd.DataFrame],
                    control_of: dict[str, str]) -> None:
    """Add to each finished check the same margin measured against its model's control (``control_of``: the
    reference fine-tuned on the same schedule without a defence; ``control_tables``: the comparison against each
    control): does the defence, not the extra training, explain it?"""
    for c in checks:
        if c.get("passed") is None:
            continue
        control = control_of.get(c["model"])
        if control is None:
            c["text"] += f". No control ({', '.join(f'`{n}`' for n in control_tables)}) has the same schedule"
            continue
        wt = _wt(control_tables[control])
        row = wt[(wt["model"] == c["model"]) & (wt["setting"] == c["setting"])]
        if row.empty:
            continue
        r = row.iloc[0].to_dict()
        c["control"] = {"model": r["reference"], "margin": float(r["diff_adversarial"]),
                        "p_one_sided": float(r["p_adversarial_greater"])}
        c["text"] += (f". Against the control `{r['reference']}`: margin {_ci(r, 'diff_adversarial')}, one-sided "
                      f"p={r['p_adversarial_greater']:.3g}")


def table_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Clean first (per model, from its first setting), then every setting × model: Dice per region and the WT
    difference to the reference."""
    out = []
    models = list(pd.unique(table["model"]))
    settings = list(pd.unique(table["setting"]))
    for model in models:
        first = table[(table["model"] == model) & (table["setting"] == settings[0])].set_index("region")
        wt = first.loc["WT"].to_dict()
        out.append({"setting": "clean", "model": model, "defence": wt["defence"],
                    **{f"{r}_dice": float(first.loc[r, "clean_dice"]) for r in REGIONS},
                    **_versus(wt, "diff_clean", "p_clean")})
    for setting in settings:
        for model in models:
            mine = table[(table["model"] == model) & (table["setting"] == setting)].set_index("region")
            if mine.empty:
                continue
            wt = mine.loc["WT"].to_dict()
            out.append({"setting": setting_label({**wt, "attack": wt["attack"]}), "model": model,
                        "defence": wt["defence"], **{f"{r}_dice": float(mine.loc[r, "adversarial_dice"])
                                                      for r in REGIONS},
                        **_versus(wt, "diff_adversarial", "p_adversarial")})
    return out


def _versus(wt: dict[str, Any], key: str, p: str) -> dict[str, Any]:
    if wt["model"] == wt["reference"] or wt[key] != wt[key]:
        return {"WT_diff": None, "WT_diff_ci": None, "WT_p": None}
    return {"WT_diff": float(wt[key]), "WT_diff_ci": [float(wt[key + "_ci_low"]), float(wt[key + "_ci_high"])],
            "WT_p": float(wt[p])}


def model_lines(cfg: RunConfig, table: pd.DataFrame, provenances: dict[str, dict[str, Any]]) -> list[str]:
    """One Markdown bullet per model (``provenances``: each model's checkpoint provenance, empty for an external
    model): checkpoint file (or factory), defence and its parameters, init_from."""
    reference = str(table["reference"].iloc[0])
    lines = []
    for m in cfg.models:
        prov = provenances[m.name]
        rec = defence_record(prov)
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in rec["params"].items()) or "no parameters"
        init = prov.get("init_from")
        init_txt = f"; fine-tuned from `{shown_path(init['path'])}`" if isinstance(init, dict) else ""
        ref = " (**reference**)" if m.name == reference else ""
        where = shown_path(m.checkpoint) if m.checkpoint else m.model
        lines.append(f"- `{m.name}`{ref}: `{where}`, defence `{rec['name']}` ({params}){init_txt}")
    return lines


def markdown(cfg: RunConfig, table: pd.DataFrame, rows: list[dict[str, Any]], results: list[dict[str, Any]],
             command: str, plot: str, n_cases: int, provenances: dict[str, dict[str, Any]],
             max_clean_loss: float = 0.05, alpha: float = 0.05, out: str | Path = "OUT") -> str:
    lines = [
        "# Defences: robust checkpoints against a clean reference", "",
        "Produced by (from the repository root):", "", "```", command, "```", "",
        f"The grid runs on the experiment engine (`docs/engine.md`): `{shown_path(out)}` is a `volrob robustness` run "
        "folder whose `comparison.csv` (one row per `model`, setting and region, against the `reference`) holds "
        "every number below; each model's defence is the one recorded in its checkpoint.", "",
        f"Split `{cfg.split}` ({n_cases} case(s)), seed {cfg.seed}. Budgets in 1/255 of the [0, 1] attack space. "
        "Mean Dice over cases; WT Δ is the paired mean difference of the model minus the reference on the same "
        "cases with its 95 % percentile-bootstrap CI, p the two-sided paired Wilcoxon signed-rank test.", "",
        "## Models", "", *model_lines(cfg, table, provenances), "",
        "## Dice", "",
        "| setting | model | defence | TC Dice | WT Dice | ET Dice | WT Δ vs reference [95 % CI] | p |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        diff = "–" if r["WT_diff"] is None else (f"{r['WT_diff']:+.3f} [{r['WT_diff_ci'][0]:+.3f}, "
                                                 f"{r['WT_diff_ci'][1]:+.3f}]")
        p = "–" if r["WT_p"] is None else f"{r['WT_p']:.3g}"
        lines.append(f"| {r['setting']} | {r['model']} | {r['defence']} | {r['TC_dice']:.3f} | {r['WT_dice']:.3f} "
                     f"| {r['ET_dice']:.3f} | {diff} | {p} |")
    lines += ["", f"![WT Dice per model and attack]({plot})", "", "## Checks", "",
              f"A check passes when the paired mean WT Dice margin over the reference is positive and consistent "
              f"across cases (one-sided paired Wilcoxon p < {alpha:g}); for the pgd_at model the clean WT Dice lost "
              f"must also be at most {max_clean_loss:g}. CI and one-sided p are stated; the margin against the "
              "control (the same fine-tuning without a defence: same seed, data, starting checkpoint and training "
              "options) tells the defence's share from the extra training's.",
              ""]
    for c in results:
        verdict = {True: "**pass**", False: "**FAIL**", None: "not run"}[c["passed"]]
        lines.append(f"- {c['check']}: {verdict}. {c['text']}")
    return "\n".join(lines) + "\n"


def provenance_of(res: RunResult, name: str) -> dict[str, Any]:
    """The checkpoint provenance of a run's model as loaded by the engine (empty for an external model)."""
    assert res.pool is not None
    prov = res.pool.sources[name].origin.get("provenance")
    return prov if isinstance(prov, dict) else {}


def check_config(cfg: RunConfig, controls: list[str], where: str) -> None:
    """ConfigError unless ``cfg`` is a white-box grid of two or more models with a reference and ``controls`` are
    among its models."""
    if cfg.transfer:
        raise ConfigError("transfer: the defence table is a white-box grid (transfer: false)", path=where)
    if len(cfg.models) < 2:
        raise ConfigError("models: the defence table needs two or more models", path=where)
    if not cfg.attacks:
        raise ConfigError("attacks: the grid has no attacks", path=where)
    if resolve_reference(cfg.models, cfg.reference) is None:
        raise ConfigError("reference: name the reference model (several or no models have defended false)",
                          path=where)
    for name in controls:
        if name not in [m.name for m in cfg.models]:
            raise ConfigError(f"--control: {name!r} is not one of the models", path=where)


def run_grid(cfg: RunConfig, out: str | Path, *, quiet: bool) -> RunResult:
    """Run (or resume) ``cfg`` into ``out`` (plan lines on stderr); DataError when any unit failed."""
    echo = (lambda _text: None) if quiet else (lambda text: print(text, file=sys.stderr))
    res = run_experiment(cfg, out, command="robustness", progress=not quiet, echo=echo)
    assert res.tables is not None and res.outputs is not None  # one process: rank 0
    if not res.tables.failures.empty:
        first = res.tables.failures.iloc[0]
        raise DataError(f"{len(res.tables.failures)} unit(s) failed (failures.csv; a rerun retries them), first "
                        f"{first['unit']}: {first['reason']}", path=out)
    if res.outputs.comparison is None:
        raise DataError("the run wrote no comparison (fewer than two models scored)", path=out)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/robustness/defence_table.yaml")
    ap.add_argument("-o", "--out", required=True, help="run folder (reused to resume)")
    ap.add_argument("--doc", help="write the Markdown table here (and the plot next to it, .png)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--eps", type=float, default=4.0, help="PGD budget of check (a) (1/255 units)")
    ap.add_argument("--max-clean-loss", type=float, default=0.05, help="clean WT Dice the pgd_at model may lose")
    ap.add_argument("--alpha", type=float, default=0.05, help="one-sided Wilcoxon level of check (a)")
    ap.add_argument("--control", action="append", default=[],
                    help="a model trained without a defence to report check margins against as well (e.g. the "
                         "reference fine-tuned on the same schedule); repeat for several schedules: each checked "
                         "model is compared with the control whose training schedule matches its own")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        cfg = load_run_config(args.config, args.overrides)
        check_config(cfg, args.control, args.config)
        res = run_grid(cfg, args.out, quiet=args.quiet)
        assert res.tables is not None and res.outputs is not None and res.outputs.comparison is not None
        table = res.outputs.comparison
        rows = table_rows(table)
        results = check_pgd_at(table, eps=args.eps, max_clean_loss=args.max_clean_loss, alpha=args.alpha) \
            + check_vaft(table, alpha=args.alpha)
        provenances = {m.name: provenance_of(res, m.name) for m in cfg.models}
        if args.control:
            schedules = {name: schedule_key(prov) for name, prov in provenances.items()}
            defences = table.groupby("model", sort=False)["defence"].first().to_dict()
            tables = {c: compare_models(res.tables.results, defences, c, seed=cfg.seed) for c in args.control}
            against_control(results, tables, matched_controls(schedules, args.control))
        if args.doc:
            plot = plot_comparison(table, Path(args.doc).with_suffix(".png"), region=cfg.region)
            command = "python scripts/defence_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
            atomic_write_text(args.doc, markdown(cfg, table, rows, results, command, plot.name, len(res.cases),
                                                    provenances, args.max_clean_loss, args.alpha, args.out))
    except VolrobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"checks": results, "rows": rows, "computed_now": res.computed,
                      "seconds": round(time.perf_counter() - start, 1)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
