"""What the bundle's outputs mean: the output mode from its ``postprocessing`` (sigmoid + threshold -> ``regions``;
softmax and/or argmax -> ``labels``), or ``options.output`` instead; which volrob channel each output channel is
(from ``metadata.json`` or ``options.labels``); which modality each input channel is."""

from __future__ import annotations

import re
from typing import Any

from volrob.data.labels import CLASSES, CONVENTIONS, REGIONS, get_convention
from volrob.errors import ConfigError
from volrob.sources.bundle.config import BundleConfig
from volrob.sources.bundle.steps import read_compose

OUTPUT_NO_OPS = ("Invert", "SaveImage", "EnsureType", "ToTensor", "ToNumpy", "ToDevice", "CopyItems", "DeleteItems",
                 "SelectItems", "Identity", "FromMetaTensor", "ToMetaTensor")
"""Steps that only map the prediction back to the input's grid or write it: volrob does both itself."""
MONAI_BRATS_REGIONS = ("TC", "WT", "ET")
"""Channel order of MONAI's BraTS bundles (brats_mri_segmentation: 0 tumour core, 1 whole tumour, 2 enhancing)."""


def map_postprocessing(cfg: BundleConfig, key: str = "postprocessing", pred: str = "pred") -> tuple[str, list[dict]]:
    """``(output mode, record)`` of the postprocessing Compose ``key`` acting on the data key ``pred``."""
    activation: str | None = None
    discrete: str | None = None
    record: list[dict[str, Any]] = []
    for step in read_compose(cfg, key):
        entry = {"transform": step.name, "key": step.key}
        record.append(entry)
        if not step.touches(pred):
            entry["as"] = f"not applied to {pred!r}"
            continue
        if discrete is not None and step.kind not in OUTPUT_NO_OPS:
            raise step.error("changes the discrete prediction, which volrob cannot reproduce; set options.output "
                             "(regions or labels) in the model's config entry to score the network's outputs "
                             "without it")
        if step.kind == "Activations":
            if "other" in step.args and step.get("other", pred) is not None:
                raise step.error("a custom activation (other) is not supported")
            step.require_defaults({"sigmoid", "softmax", "other", "allow_missing_keys"}, pred)
            sig, soft = bool(step.get("sigmoid", pred)), bool(step.get("softmax", pred))
            if sig == soft:
                raise step.error("give exactly one of sigmoid or softmax")
            if activation is not None:
                raise step.error("a second activation")
            activation = "sigmoid" if sig else "softmax"
            entry["as"] = activation
        elif step.kind == "AsDiscrete":
            step.require_defaults({"argmax", "threshold", "to_onehot", "allow_missing_keys"}, pred)
            argmax, threshold = bool(step.get("argmax", pred)), step.get("threshold", pred)
            if argmax and threshold is None:
                discrete = "argmax"
            elif threshold is not None and not argmax:
                if activation != "sigmoid" or threshold != 0.5:
                    raise step.error(f"threshold {threshold!r} after {activation or 'no activation'}: volrob reads "
                                     "regions as sigmoid > 0.5 only")
                discrete = "threshold"
            else:
                raise step.error("give either argmax or a threshold")
            entry["as"] = discrete
        elif step.kind in OUTPUT_NO_OPS:
            entry["as"] = "no-op (volrob maps predictions back and writes them itself)"
        else:
            raise step.error("not supported in postprocessing (supported: Activationsd, AsDiscreted, Invertd, "
                             "SaveImaged); set options.output (regions or labels) to use the network's outputs")
    if discrete is not None:
        return ("regions" if discrete == "threshold" else "labels"), record
    if activation is not None:
        return ("regions" if activation == "sigmoid" else "labels"), record
    raise cfg.error(key, "neither a sigmoid nor a softmax/argmax: the output mode is unknown; set options.output "
                         "(regions or labels)")


def output_channels(mode: str, metadata: dict[str, Any] | None, labels: Any, where: str) -> tuple[list[int], dict]:
    """For each volrob channel (regions TC, WT, ET or classes background, NCR, ED, ET) the bundle output channel that
    holds it, and a record saying where that came from. ``labels`` (``options.labels``): a label convention name or
    one canonical class per output channel."""
    names = _channel_def(metadata, "outputs")
    if mode == "regions":
        if labels is not None:
            raise ConfigError("options.labels: only for bundles with softmax/argmax outputs (labels mode)")
        if names is None:
            return list(range(3)), {"channels": list(MONAI_BRATS_REGIONS),
                                    "from": "assumed: MONAI's BraTS convention (no output channel_def in metadata)"}
        found = [_match(n, _REGION_WORDS) for n in names]
        return _order(found, list(REGIONS), names, where), {"channels": found, "from": "metadata.json"}
    if labels is not None:
        found = _labels_option(labels)
        names, source = [str(f) for f in found], "options.labels"
    elif names is not None:
        found = [_match(n, _CLASS_WORDS) for n in names]
        source = "metadata.json"
    else:
        raise ConfigError(f"{where}: the meaning of the output classes is unknown (no output channel_def in "
                          "configs/metadata.json); give options.labels (a label convention "
                          f"{sorted(CONVENTIONS)} or one class of {list(CLASSES)} per output channel)")
    return _order(found, list(CLASSES), names, where), {"channels": found, "from": source}


def input_modalities(metadata: dict[str, Any] | None, option: Any, where: str) -> tuple[list[str], str]:
    """The modality of each input channel (volrob's names t1, t1ce, t2, flair): ``options.modalities``, else the
    metadata's input channel_def."""
    if option is not None:
        if not isinstance(option, list) or not option or not all(isinstance(m, str) and m for m in option):
            raise ConfigError(f"options.modalities: expected a list of modality names, got {option!r}")
        if len(set(option)) != len(option):
            raise ConfigError(f"options.modalities: names must be distinct, got {option}")
        return list(option), "options.modalities"
    names = _channel_def(metadata, "inputs")
    if names is None:
        raise ConfigError(f"{where}: the input modalities are unknown (no input channel_def in "
                          "configs/metadata.json); give options.modalities, e.g. [t1ce, t1, t2, flair]")
    found = [_match(n, _MODALITY_WORDS) for n in names]
    missing = [n for n, f in zip(names, found, strict=True) if f is None]
    if missing or len(set(found)) != len(found):
        raise ConfigError(f"{where}: input channels {names} are not distinct known modalities "
                          "(t1, t1ce, t2, flair); give options.modalities")
    return [str(f) for f in found], "metadata.json"


def declared_channels(metadata: dict[str, Any] | None, side: str) -> int | None:
    """``num_channels`` of the metadata's single input or output (None when not given)."""
    entry = _single(metadata, side)
    n = entry.get("num_channels") if entry else None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def _single(metadata: dict[str, Any] | None, side: str) -> dict[str, Any] | None:
    fmt = (metadata or {}).get("network_data_format")
    entries = fmt.get(side) if isinstance(fmt, dict) else None
    if not isinstance(entries, dict) or not entries:
        return None
    entry = entries.get("image" if side == "inputs" else "pred")
    if entry is None and len(entries) == 1:
        entry = next(iter(entries.values()))
    return entry if isinstance(entry, dict) else None


def _channel_def(metadata: dict[str, Any] | None, side: str) -> list[str] | None:
    entry = _single(metadata, side)
    cdef = entry.get("channel_def") if entry else None
    if not isinstance(cdef, dict) or not cdef:
        return None
    try:
        order = sorted(cdef, key=int)
    except ValueError:
        return None
    if [int(k) for k in order] != list(range(len(order))):
        return None
    return [str(cdef[k]) for k in order]


def _order(found: list[str | None], wanted: list[str], names: list[str], where: str) -> list[int]:
    unknown = [f"{i} ({n!r})" for i, (n, f) in enumerate(zip(names, found, strict=True)) if f is None]
    if unknown:
        raise ConfigError(f"{where}: output channel(s) {', '.join(unknown)} are none of {wanted}; give "
                          "options.labels or options.output")
    if sorted(str(f) for f in found) != sorted(wanted):
        raise ConfigError(f"{where}: output channels {found} should be exactly one each of {wanted}")
    return [found.index(w) for w in wanted]


def _labels_option(labels: Any) -> list[str | None]:
    if isinstance(labels, str):
        conv = get_convention(labels)
        by_value = {0: "background"} | {v: c for c, v in conv.values.items()}
        gaps = [i for i in range(max(by_value)) if i not in by_value]
        if gaps:
            raise ConfigError(f"options.labels: convention {labels} ({conv.description}) leaves output channel(s) "
                              f"{gaps} without a class; give one class of {list(CLASSES)} per output channel")
        return [by_value[i] for i in range(len(by_value))]
    if isinstance(labels, list) and all(isinstance(c, str) for c in labels):
        bad = [c for c in labels if c not in CLASSES]
        if bad:
            raise ConfigError(f"options.labels: unknown class(es) {bad}; use {list(CLASSES)}")
        return list(labels)
    raise ConfigError(f"options.labels: expected a label convention name or a list of classes, got {labels!r}")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _match(text: str, table: list[tuple[str, set[str], tuple[str, ...]]]) -> str | None:
    """The first entry of ``table`` (name, whole words, substrings) that ``text`` matches."""
    low, words = text.lower(), _words(text)
    for name, whole, parts in table:
        if words & whole or any(p in low for p in parts):
            return name
    return None


_REGION_WORDS = [("WT", {"wt"}, ("whole",)), ("TC", {"tc"}, ("core",)), ("ET", {"et"}, ("enhanc",))]
_CLASS_WORDS = [("background", {"bg"}, ("background",)),
                ("NCR", {"ncr", "net", "netc"}, ("necro", "non-enhanc", "nonenhanc", "non enhanc")),
                ("ED", {"ed", "snfh"}, ("edema", "oedema")),
                ("ET", {"et"}, ("enhanc",))]
_MODALITY_WORDS = [("t1ce", {"t1c", "t1ce", "t1gd", "t1post", "t1wce"}, ("contrast", "gadolin")),
                   ("flair", {"flair", "t2f", "t2flair"}, ()),
                   ("t1", {"t1", "t1w", "t1n"}, ()),
                   ("t2", {"t2", "t2w"}, ())]
