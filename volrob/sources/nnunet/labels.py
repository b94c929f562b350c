"""nnU-Net's outputs mapped to volrob's output modes.

- Label-based models (``dataset.json`` labels are single values): one softmax channel per label value, in sorted
  order. volrob's ``labels`` mode wants the canonical classes background, NCR, ED, ET: a channel permutation.
- Region-based models (some labels are lists, with ``regions_class_order``, e.g. nnU-Net's BraTS setup): one sigmoid
  channel per region in ``dataset.json`` order. volrob's ``regions`` mode wants TC, WT, ET: again a permutation.

What each label value means comes from ``options.labels`` (a volrob label convention: brats2021, brats2023, msd)
or, without it, from the names in dataset.json (e.g. edema, non-enhancing, enhancing; whole tumor, tumor core).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from volrob.data.labels import CLASSES, REGION_CLASSES, REGIONS, get_convention
from volrob.errors import ConfigError

_CLASS_NAMES: dict[str, str] = {
    **dict.fromkeys(("background", "bg"), "background"),
    **dict.fromkeys(("edema", "oedema", "ed", "snfh", "peritumoral edema", "peritumoral oedema",
                     "surrounding non enhancing flair hyperintensity"), "ED"),
    **dict.fromkeys(("necrosis", "necrotic", "ncr", "ncr net", "necrotic core", "necrotic tumor core",
                     "necrotic tumour core", "non enhancing", "non enhancing tumor", "non enhancing tumour",
                     "non enhancing tumor core", "non enhancing tumour core", "netc"), "NCR"),
    **dict.fromkeys(("enhancing", "enhancing tumor", "enhancing tumour", "et"), "ET"),
}
_REGION_NAMES: dict[str, str] = {
    **dict.fromkeys(("whole tumor", "whole tumour", "wt", "whole"), "WT"),
    **dict.fromkeys(("tumor core", "tumour core", "tc", "core"), "TC"),
    **dict.fromkeys(("enhancing tumor", "enhancing tumour", "et", "enhancing"), "ET"),
}


@dataclass(frozen=True)
class OutputMap:
    """volrob's output mode and, per volrob channel, the nnU-Net output channel that feeds it."""

    mode: str
    channel_order: tuple[int, ...]
    record: dict[str, Any]


def _key(name: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", name.casefold()).split())


def _entries(dataset: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(str(k), v) for k, v in dataset["labels"].items() if k != "ignore"]


def _is_background(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(v == 0 for v in values)


def _ints(value: Any, name: str) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"dataset.json labels[{name!r}] must be an integer or a list of integers, got {value!r}")
    return tuple(values)


def _class_of_value(labels: str | None, names: dict[int, str]) -> dict[int, str]:
    """Canonical class of each label value, from a convention or from the names."""
    if labels is not None:
        conv = get_convention(labels)
        by_raw = {0: "background", **{raw: cls for cls, raw in conv.values.items()}}
        missing = sorted(v for v in names if v not in by_raw)
        if missing:
            raise ConfigError(f"options.labels: convention {labels!r} has no label value(s) {missing} "
                              f"(dataset.json labels: {names})")
        return {v: by_raw[v] for v in names}
    out = {}
    for value, name in names.items():
        cls = _CLASS_NAMES.get(_key(name))
        if cls is None:
            raise ConfigError(f"dataset.json label {name!r} ({value}) is not a name volrob knows; set options.labels "
                              "to the label convention (brats2021, brats2023 or msd)")
        out[value] = cls
    return out


def _label_map(dataset: dict[str, Any], labels: str | None) -> OutputMap:
    names = {}
    for name, value in _entries(dataset):
        (v,) = _ints(value, name)
        if v in names:
            raise ConfigError(f"dataset.json labels {names[v]!r} and {name!r} share the value {v}")
        names[v] = name
    values = sorted(names)
    classes = _class_of_value(labels, names)
    found = sorted(classes.values(), key=CLASSES.index)
    if found != list(CLASSES):
        raise ConfigError(f"dataset.json labels {names} map to classes {found}; volrob's labels output needs exactly "
                          f"{list(CLASSES)} (set options.labels if the names mislead)")
    channel = {cls: values.index(v) for v, cls in classes.items()}
    order = tuple(channel[c] for c in CLASSES)
    return OutputMap("labels", order, {"kind": "labels", "nnunet_labels": {str(v): names[v] for v in values},
                                       "canonical": {c: names[values[channel[c]]] for c in CLASSES}})


def _region_map(dataset: dict[str, Any], labels: str | None) -> OutputMap:
    regions = [(name, _ints(value, name)) for name, value in _entries(dataset) if not _is_background(value)]
    which: dict[str, str] = {}
    if labels is not None:
        classes = _class_of_value(labels, {v: str(v) for _, vs in regions for v in vs})
        for name, vs in regions:
            members = frozenset(CLASSES.index(classes[v]) for v in vs)
            region = next((r for r in REGIONS if members == frozenset(REGION_CLASSES[r])), None)
            if region is None:
                raise ConfigError(f"dataset.json region {name!r} {list(vs)} is none of {list(REGIONS)} under label "
                                  f"convention {labels!r}")
            which[name] = region
    else:
        for name, _ in regions:
            r = _REGION_NAMES.get(_key(name))
            if r is None:
                raise ConfigError(f"dataset.json region {name!r} is not a name volrob knows; set options.labels to "
                                  "the label convention (brats2021, brats2023 or msd)")
            which[name] = r
    found = sorted(which.values(), key=REGIONS.index)
    if len(regions) != 3 or found != list(REGIONS):
        raise ConfigError(f"dataset.json regions {[n for n, _ in regions]} do not map one-to-one onto volrob's "
                          f"regions {list(REGIONS)} (found {found})")
    index = {name: i for i, (name, _) in enumerate(regions)}
    by_region = {r: name for name, r in which.items()}
    order = tuple(index[by_region[r]] for r in REGIONS)
    return OutputMap("regions", order, {"kind": "regions", "nnunet_regions": [n for n, _ in regions],
                                        "regions_class_order": dataset.get("regions_class_order"),
                                        "canonical": {r: by_region[r] for r in REGIONS}})


def output_map(dataset: dict[str, Any], labels: str | None = None) -> OutputMap:
    """How the nnU-Net model's output channels become volrob's ``labels`` or ``regions`` output."""
    is_regions = any(isinstance(v, list) and len(v) > 1 for _, v in _entries(dataset))
    out = _region_map(dataset, labels) if is_regions else _label_map(dataset, labels)
    if labels is not None:
        out.record["convention"] = labels
    return out


def output_channels(dataset: dict[str, Any]) -> int:
    """Number of output channels nnU-Net gives the network for this dataset.json."""
    entries = _entries(dataset)
    if any(isinstance(v, list) and len(v) > 1 for _, v in entries):
        return sum(not _is_background(v) for _, v in entries)
    return len({v for name, value in entries for v in _ints(value, name)})
