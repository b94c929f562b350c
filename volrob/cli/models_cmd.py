"""``volrob models``: list registered models with their parameter counts per preset, then the registered defences."""

from __future__ import annotations

import argparse
import json

_ROI = {"tiny": (64, 64, 64), "paper": (96, 96, 96)}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models (with parameter counts) and defences",
                       description="List every registered segmentation model with its family and the number of "
                                   "parameters of each size preset (4 input channels, 3 region outputs; "
                                   "ROI 64^3 for tiny, 96^3 for paper), then every registered defence. "
                                   "--json prints {\"models\": [...], \"defences\": [...]}.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob import models
    from volrob.models.registry import PRESETS

    rows = []
    for name in models.available():
        info = models.model_info(name)
        counts = {}
        for preset in PRESETS:
            net = models.create(name, in_channels=4, out_channels=3, roi_size=_ROI[preset], preset=preset)
            counts[preset] = sum(p.numel() for p in net.parameters())
        rows.append({"name": name, "family": info.family, "params": counts, "description": info.description})
    defs = defence_rows()
    if args.json:
        print(json.dumps({"models": rows, "defences": defs}, indent=2))
        return 0
    print(f"{'model':<11} {'family':<12} {'tiny':>11} {'paper':>13}  description")
    for r in rows:
        print(f"{r['name']:<11} {r['family']:<12} {r['params']['tiny']:>11,} {r['params']['paper']:>13,}  "
              f"{r['description']}")
    print()
    width = max([len("defence"), *(len(d["name"]) for d in defs)])
    print(f"{'defence':<{width}}  description")
    for d in defs:
        print(f"{d['name']:<{width}}  {d['description']}")
    return 0


def defence_rows() -> list[dict[str, str]]:
    """Name and description of every registered defence."""
    from volrob.defences.registry import DEFENCES

    return [{"name": n, "description": DEFENCES.entry(n).description} for n in DEFENCES.available()]
