"""The model's input channels as volrob modality names (the names a manifest uses: t1, t1ce, t2, flair).

nnU-Net lists its channels in dataset.json ``channel_names`` (``modality`` in older files), e.g. ``{"0": "T1",
"1": "T1ce", "2": "T2", "3": "FLAIR"}`` or BraTS 2023's ``t1n, t1c, t2w, t2f``. Known names are mapped; any other
name is kept in lower case, so a manifest that uses it still matches; ``options.modalities`` overrides the lot.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from volrob.errors import ConfigError

_NAMES: dict[str, str] = {
    **dict.fromkeys(("t1", "t1n", "t1w", "t1native", "nativet1"), "t1"),
    **dict.fromkeys(("t1ce", "t1c", "t1gd", "t1post", "t1contrast", "t1wce", "t1cegd"), "t1ce"),
    **dict.fromkeys(("t2", "t2w"), "t2"),
    **dict.fromkeys(("flair", "t2flair", "t2f", "t2wflair"), "flair"),
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.casefold())


def model_modalities(dataset: dict[str, Any], override: Sequence[str] | None = None) -> list[str]:
    """The volrob modality of each input channel, in channel order."""
    channels = dataset.get("channel_names", dataset.get("modality"))
    assert isinstance(channels, dict)
    try:
        ordered = [str(channels[k]) for k in sorted(channels, key=int)]
    except (ValueError, TypeError):
        raise ConfigError(f"dataset.json channel_names keys must be channel numbers, got {sorted(channels)}") from None
    if override is not None:
        if len(override) != len(ordered):
            raise ConfigError(f"options.modalities: the model has {len(ordered)} channels {ordered}, got "
                              f"{len(override)} names")
        names = [str(m) for m in override]
    else:
        names = [_NAMES.get(_key(n), n.casefold()) for n in ordered]
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset.json channel_names {ordered} give repeated modalities {names}; set "
                          "options.modalities")
    return names
