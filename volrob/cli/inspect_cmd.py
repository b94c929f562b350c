"""``volrob inspect CKPT [--json]``: one readable summary of a checkpoint (model, data, defence, training, file)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from volrob.checkpoint import Checkpoint, load_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summarise a checkpoint (model, defence, training, file hash)",
                       description="Print the model and its config, parameter count, labels, preprocessing, "
                                   "normalisation, sliding window, defence and its parameters, init_from, training "
                                   "epochs / best epoch / validation Dice, seed, manifest sha256 and the file's "
                                   "sha256 and size of a volrob checkpoint.")
    p.add_argument("checkpoint", help="a volrob checkpoint (.pt)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def defence_record(provenance: dict[str, Any]) -> dict[str, Any]:
    """``{"name", "params"}`` of the checkpoint's defence; ``{"name": "none", "params": {}}`` when undefended."""
    rec = provenance.get("defence")
    if not isinstance(rec, dict) or rec.get("name") in (None, "none"):
        return {"name": "none", "params": {}}
    return {"name": str(rec["name"]), "params": dict(rec.get("params") or {})}


def summary(ckpt: Checkpoint) -> dict[str, Any]:
    """Every field ``volrob inspect`` shows, as plain JSON-ready values."""
    prov = ckpt.provenance
    net = ckpt.build_model()
    size = Path(ckpt.path).stat().st_size if ckpt.path is not None else None
    return {
        "model": ckpt.model_name, "model_config": ckpt.model_config,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "output_mode": ckpt.output_mode, "modalities": list(ckpt.modalities),
        "label_convention": ckpt.label_convention, "preprocessing": ckpt.preprocessing.to_dict(),
        "normalisation": ckpt.normalisation, "sliding_window": ckpt.inference.to_dict(),
        "defence": defence_record(prov), "init_from": prov.get("init_from"),
        "epochs": prov.get("epochs"), "best_epoch": prov.get("best_epoch"), "val_dice": prov.get("val_dice"),
        "seed": prov.get("seed"), "manifest_sha256": prov.get("manifest_sha256"),
        "file": None if ckpt.path is None else str(ckpt.path), "sha256": ckpt.sha256, "size_bytes": size,
    }


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items()) or "-"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def format_summary(info: dict[str, Any]) -> str:
    """The text form: one ``field: value`` line per field."""
    shown = dict(info)
    d = shown.pop("defence")
    shown["parameters"] = f"{info['parameters']:,}"
    lines = []
    for key, val in shown.items():
        lines.append(f"{key + ':':<17} {_value(val)}")
        if key == "sliding_window":
            params = f" ({_value(d['params'])})" if d["params"] else ""
            lines.append(f"{'defence:':<17} {d['name']}{params}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = summary(load_checkpoint(args.checkpoint))
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0
