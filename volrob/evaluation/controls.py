"""Schedule-matched controls of a defence: a model fine-tuned on the same schedule without a defence, so a robust
model's margin over its reference can be split into the defence's share and the extra training's."""

from __future__ import annotations

import json
from typing import Any

SCHEDULE_IGNORED = ("device", "amp", "init_from")  # where a run ran, not what it learnt; init_from by its sha256


def schedule_key(provenance: dict[str, Any]) -> str:
    """What a checkpoint's training did apart from its defence: seed, data (manifest sha256), the ``train``
    options and the sha256 of the checkpoint it was fine-tuned from. Equal keys: the same schedule."""
    train = (provenance.get("config") or {}).get("train") or {}
    init = provenance.get("init_from")
    return json.dumps({"seed": provenance.get("seed"), "manifest": provenance.get("manifest_sha256"),
                       "init_from": init.get("sha256") if isinstance(init, dict) else None,
                       "train": {k: v for k, v in train.items() if k not in SCHEDULE_IGNORED}},
                      sort_keys=True, default=str)


def matched_controls(schedules: dict[str, str], controls: list[str]) -> dict[str, str]:
    """For each model that is not a control, the first control in ``controls`` trained on the same schedule
    (models without one are left out)."""
    out = {}
    for model, key in schedules.items():
        if model in controls:
            continue
        same = [c for c in controls if schedules[c] == key]
        if same:
            out[model] = same[0]
    return out
