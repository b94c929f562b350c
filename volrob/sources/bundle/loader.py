"""``bundle:FOLDER``: a MONAI bundle as a volrob model source (see docs/bundles.md).

Options: ``trust`` (let the config run code, through MONAI's ``ConfigParser``), ``config`` (another config file in the
folder), ``weights`` (another weights file in the folder), ``modalities`` (input channels, when the metadata does not
name them), ``labels`` (the meaning of softmax output channels: a label convention or one class per channel),
``output`` (``regions`` or ``labels``: read the outputs this way instead of from ``postprocessing``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from volrob.errors import ConfigError
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.sources.base import ModelSource, register_source
from volrob.sources.bundle.channels import fed_modalities, wrap
from volrob.sources.bundle.config import BundleConfig
from volrob.sources.bundle.files import locate, read_data
from volrob.sources.bundle.inferer import map_inferer
from volrob.sources.bundle.network import build_network, load_weights
from volrob.sources.bundle.outputs import declared_channels, input_modalities, map_postprocessing, output_channels
from volrob.sources.bundle.preprocessing import map_preprocessing

OPTIONS = ("trust", "config", "weights", "modalities", "labels", "output")
OUTPUTS = ("regions", "labels")


@register_source("bundle", options=OPTIONS)
def load_bundle(location: str, *, options: Mapping[str, Any], window: Mapping[str, Any],
                name: str | None) -> ModelSource:
    """The MONAI bundle in folder ``location`` as a :class:`ModelSource`; ``window`` overrides the bundle's
    sliding-window settings."""
    trust = options.get("trust", False)
    if not isinstance(trust, bool):
        raise ConfigError(f"options.trust: expected true or false, got {trust!r}")
    for key in ("config", "weights"):
        if options.get(key) is not None and not isinstance(options[key], str):
            raise ConfigError(f"options.{key}: expected a file name inside the bundle, got {options[key]!r}")
    output = options.get("output")
    if output is not None and output not in OUTPUTS:
        raise ConfigError(f"options.output: expected one of {list(OUTPUTS)}, got {output!r}")
    files = locate(location, config=options.get("config"), weights=options.get("weights"))
    cfg = BundleConfig(files.config, trusted=trust, bundle_root=files.folder)
    metadata = read_data(files.metadata) if files.metadata is not None else None
    where = str(files.metadata or files.config)

    pre = map_preprocessing(cfg)
    if output is None:
        mode, post_record = map_postprocessing(cfg)
    else:
        mode, post_record = output, [{"as": f"not read: options.output = {output}"}]
    modalities, modalities_from = input_modalities(metadata, options.get("modalities"), where)
    index, channels_record = output_channels(mode, metadata, options.get("labels"), where)
    _check_counts(cfg, metadata, len(modalities), len(index), where)

    net, net_record = build_network(cfg)
    sha = load_weights(net, files.weights)
    fed, inputs = fed_modalities(modalities)
    net = wrap(net, inputs, index)

    bundle_window = _bundle_window(cfg, window)
    try:
        win = SlidingWindowConfig.from_dict({**bundle_window, **window})
    except ConfigError as err:
        raise ConfigError(f"window: {err}") from None
    norm = pre.norm.build(len(modalities), cfg)
    predictor = Predictor(net, window=win, output_mode=mode, norm=norm).eval()
    origin = {
        "bundle": str(files.folder), "config": str(files.config),
        "config_sha256": hashlib.sha256(files.config.read_bytes()).hexdigest(),
        "metadata": None if files.metadata is None else str(files.metadata), "weights": str(files.weights),
        "trusted": trust, "network": net_record, "preprocessing": pre.record, "norm": norm.record(),
        "inferer": bundle_window, "postprocessing": post_record, "output_mode": mode,
        "output_channels": channels_record | {"network_index": index},
        "modalities": {"network": modalities, "fed": fed, "from": modalities_from}, "fixed_input": False,
    }
    return ModelSource(name or files.folder.name, predictor, pre.config, fed, sha, origin)


def _bundle_window(cfg: BundleConfig, window: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle's inferer settings (checked on their own, so an error names the config), or none when the bundle
    has no inferer and the run gives the ROI."""
    if not cfg.has("inferer"):
        if "roi_size" not in window:
            raise cfg.error("inferer", "no such entry; give the sliding-window ROI with --roi")
        return {}
    found = map_inferer(cfg)
    try:
        SlidingWindowConfig.from_dict(found)
    except ConfigError as err:
        raise cfg.error("inferer", str(err)) from None
    return found


def _check_counts(cfg: BundleConfig, metadata: dict[str, Any] | None, n_in: int, n_out: int, where: str) -> None:
    """Input and output channel counts agree between the modalities, the metadata and literal network arguments."""
    for side, n, arg in (("inputs", n_in, "in_channels"), ("outputs", n_out, "out_channels")):
        declared = declared_channels(metadata, side)
        if declared is not None and declared != n:
            raise ConfigError(f"{where}: metadata declares {declared} {side[:-1]} channels, volrob maps {n}")
        literal = cfg.raw(f"network_def::{arg}") if cfg.has(f"network_def::{arg}") else None
        if isinstance(literal, int) and not isinstance(literal, bool) and literal != n:
            raise cfg.error(f"network_def::{arg}", f"{literal}, but {n} {side[:-1]} channels are mapped")
