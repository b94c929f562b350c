"""The study at a glance: models, data, threat model and budgets, stages and their times, device and versions, the
sanity flags with their evidence, and the exact configuration that produced the results."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from volrob.io import shown_path
from volrob.report.assets import display
from volrob.report.labels import budget_text
from volrob.report.page import CodeBlock, Details, Paragraph, Section, TableBlock
from volrob.report.results_dir import RunFolder
from volrob.report.sections.context import Context, options_text, seconds_text

STAGE_TITLES = {"evaluate": "clean evaluation", "grid": "white-box grid", "transfer": "transfer matrix",
                "compare": "defence comparison", "query": "query attack", "universal": "universal perturbation"}
THREAT_TEXT = ("Threat model: perturbations live in the model's input space after each channel is scaled to [0, 1] "
               "by the model's own preprocessing; budgets ε are in 1/255 units of that space (ε = 8 means 8/255); "
               "adversarial inputs are clipped to [0, 1] and, unless a row's threat says otherwise, changed only "
               "inside the brain (non-zero) mask. VAFA's budget is its quantisation ceiling q_max, with no voxel "
               "ε: its achieved L∞ is reported beside every result.")


def _models(ctx: Context) -> pd.DataFrame:
    trained = {t.name: t for t in ctx.results.trained}
    seen: dict[str, dict[str, Any]] = {}
    for run in ctx.results.runs.values():
        for name, rec in (run.record.get("models") or {}).items():
            seen.setdefault(name, rec)
    rows = []
    for name, rec in seen.items():
        origin = rec.get("origin") or {}
        t = trained.get(name)
        kind = "given" if t is None else ("fine-tuned" if t.kind == "defend" else "trained")
        log = t.log if t is not None else None
        rows.append({"model": name, "network": origin.get("model") or origin.get("folder") or "–",
                     "defence": rec.get("defence") or "none", "how": kind,
                     "epochs": int(log["epoch"].max()) if log is not None and not log.empty else None,
                     "best validation Dice": (t.stage.get("best_val_dice") if t is not None else None),
                     "training time": seconds_text(t.stage.get("seconds")) if t is not None else "–",
                     "weights sha256": str(rec.get("sha256") or "")[:12]})
    return pd.DataFrame(rows)


def _data(ctx: Context) -> tuple[pd.DataFrame, list[str]]:
    manifest = ctx.results.manifest
    splits = Counter(str(c.get("split")) for c in manifest.get("cases") or [])
    facts = [("manifest", manifest.get("name", "–")), ("layout", manifest.get("layout", "–")),
             ("label convention", manifest.get("label_convention", "–")),
             ("modalities", ", ".join(manifest.get("modalities") or []) or "–"),
             ("cases", ", ".join(f"{k} {v}" for k, v in sorted(splits.items())) or "–")]
    if ctx.results.data_stage is not None:
        params = ctx.results.data_stage.get("params") or {}
        facts.append(("synthesised", f"{params.get('cases')} cases of {params.get('shape')} voxels, seed "
                                     f"{params.get('seed')}"))
    notes = []
    for run in ctx.results.runs.values():
        for key in ("empty_label_cases", "unlabelled_cases"):
            if run.record.get(key):
                notes.append(f"{STAGE_TITLES.get(run.role, run.role)}: {key.replace('_', ' ')}: "
                             f"{', '.join(run.record[key][:10])}")
    return pd.DataFrame(facts, columns=["data", "value"]), notes


def _stages(ctx: Context) -> pd.DataFrame:
    rows = []
    for role, run in ctx.results.runs.items():
        cfg = run.config
        rows.append({"stage": STAGE_TITLES.get(role, role), "command": run.record.get("command"),
                     "split": cfg.get("split"), "cases": len(run.record.get("cases") or []),
                     "attack settings": len(run.record.get("cells") or []),
                     "units of work": int(run.record.get("units") or 0) + int(run.record.get("clean_units") or 0),
                     "failed": int(run.record.get("failed") or 0), "time": seconds_text(run.seconds),
                     "folder": _rel(ctx, run)})
    for t in ctx.results.trained:
        rows.append({"stage": f"{'robust fine-tune' if t.kind == 'defend' else 'training'} {t.name}",
                     "command": "train", "split": "train", "cases": None, "attack settings": None,
                     "units of work": None, "failed": None, "time": seconds_text(t.stage.get("seconds")),
                     "folder": _folder(ctx, t.folder)})
    return pd.DataFrame(rows)


def _rel(ctx: Context, run: RunFolder) -> str:
    return _folder(ctx, run.path)


def _folder(ctx: Context, folder: Path) -> str:
    """A folder as the page shows it: relative to the results, else to the working directory (never absolute)."""
    root, path = ctx.results.root.resolve(), folder.resolve()
    if path == root:
        return "."
    return str(path.relative_to(root)) if path.is_relative_to(root) else shown_path(path)


def budgets(run: RunFolder) -> pd.DataFrame:
    """One row per attack setting of ``run``: source, attack, options and budget (what was tried)."""
    rows = []
    for cell in run.record.get("cells") or []:
        rows.append({"stage": STAGE_TITLES.get(run.role, run.role), "crafted on": cell.get("source"),
                     "attack": cell.get("attack"),
                     "options": options_text(cell.get("options"), skip=cell.get("budget_key")),
                     "budget": budget_text(cell.get("budget_key"), cell.get("budget")),
                     "scored on": ", ".join(cell.get("targets") or [])})
    return pd.DataFrame(rows)


def _threats(ctx: Context) -> list[str]:
    found: set[str] = set()
    for run in ctx.results.runs.values():
        res = run.results
        if res is not None and "threat" in res.columns:
            found |= {t for t in res["threat"].dropna().astype(str).unique() if t not in ("{}", "")}
    return sorted(found)


def _environment(ctx: Context) -> pd.DataFrame:
    env = ctx.results.environment
    devices = sorted({d for run in ctx.results.runs.values() for d in run.devices()})
    worlds = sorted({int(run.record.get("world_size") or 1) for run in ctx.results.runs.values()})
    facts = [("device", ", ".join(devices) or "–"), ("GPU", env.get("cuda") or "none"),
             ("processes", ", ".join(map(str, worlds))),
             *[(k, str(env.get(k))) for k in ("volrob", "torch", "monai", "python") if k in env],
             ("seed", str(ctx.seed)), ("compute time", seconds_text(ctx.results.seconds))]
    return pd.DataFrame(facts, columns=["environment", "value"])


def flags_table(ctx: Context) -> tuple[pd.DataFrame, list[Details]]:
    """Every sanity flag of every stage (raised first) and, per raised flag, its evidence."""
    rows, evidence = [], []
    for run in ctx.results.runs.values():
        for f in run.flags:
            if not f.get("applicable", True):
                continue
            stage = STAGE_TITLES.get(run.role, run.role)
            rows.append({"stage": stage, "check": f.get("name"), "status": "RAISED" if f.get("raised") else "ok",
                         "finding": f.get("message", ""),
                         "what it suggests": f.get("meaning", "") if f.get("raised") else "",
                         "what to try": f.get("advice", "") if f.get("raised") else ""})
            if f.get("raised") and f.get("evidence"):
                frame = pd.DataFrame(f["evidence"])
                evidence.append(Details(f"Evidence behind {f.get('name')} ({stage})", [TableBlock(
                    display(frame), None, f"{f.get('name')}: the numbers behind the flag")]))
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values("status", key=lambda s: s != "RAISED", kind="stable")
        if not (frame["status"] == "RAISED").any():
            frame = frame.drop(columns=["what it suggests", "what to try"])
    return frame, evidence


def shown_paths(value: Any) -> Any:
    """``value`` with every absolute path replaced by :func:`~volrob.io.shown_path` (a page shows no machine's
    folders)."""
    if isinstance(value, dict):
        return {k: shown_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown_paths(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return shown_path(value)
    return value


def build(ctx: Context) -> Section:
    """The overview section (always present)."""
    res = ctx.results
    a = ctx.assets
    blocks: list[Any] = []
    models = _models(ctx)
    what = "study" if res.study is not None else f"{next(iter(res.runs.values())).record.get('command')} run"
    blocks.append(Paragraph(
        f"{what.capitalize()} **{res.name}**: {len(models)} model(s), "
        f"{', '.join(STAGE_TITLES.get(r, r) for r in res.runs)}; seed {ctx.seed}; "
        f"{seconds_text(res.seconds)} of computing in all (each stage's time as recorded when it ran)."))
    if res.synthetic:
        blocks.append(Paragraph(
            "Every number on this page comes from synthetic phantoms. "
            "It shows what the pipeline measures, not how real tumour segmenters behave.", "warning"))
    blocks.append(a.table("models", models, "Models", shown=display(models, {"best validation Dice": ".3f"})))
    data, notes = _data(ctx)
    blocks.append(TableBlock(data, None, "Data"))
    blocks += [Paragraph(n, "note") for n in notes]
    blocks.append(a.table("stages", _stages(ctx), "Stages: what ran, on how many cases, how long it took"))
    tried = pd.concat([budgets(r) for r in res.runs.values() if r.record.get("cells")], ignore_index=True) \
        if any(r.record.get("cells") for r in res.runs.values()) else pd.DataFrame()
    if not tried.empty:
        blocks.append(Paragraph(THREAT_TEXT))
        blocks.append(a.table("attack_settings", tried, "Attacks and budgets"))
        threats = _threats(ctx)
        if threats:
            blocks.append(Details("Threat records of the attacks (as stored in every result row)",
                                  [CodeBlock("\n".join(threats))]))
    blocks.append(TableBlock(_environment(ctx), None, "Where and with what it ran"))
    flags, evidence = flags_table(ctx)
    if not flags.empty:
        raised = int((flags["status"] == "RAISED").sum())
        blocks.append(a.table("sanity_flags", flags, f"Sanity checks: {raised} raised of {len(flags)}",
                              "A raised flag is a reason to look closer before trusting a number, not a verdict."))
        blocks += evidence
    config = res.study.get("config") if res.study is not None else next(iter(res.runs.values())).config
    plain = shown_paths(json.loads(json.dumps(config, default=str)))
    blocks.append(Details("The exact configuration that produced these results (absolute paths shown relative to "
                          "the folder the report was made in)", [CodeBlock(yaml.safe_dump(plain, sort_keys=False))]))
    return Section("overview", "At a glance", blocks)
