"""A bundle's ``preprocessing`` mapped onto volrob's two halves: the data-side geometry (orientation, spacing,
foreground crop; :class:`PreprocessConfig` with ``linear`` scaling to the [0, 1] attack space) and the network's own
intensity normalisation, which runs inside the predictor and is recomputed from its input (z-score or min-max).

Why this is exact: ``linear`` scaling divides each channel by its brain maximum without clipping, a positive linear
map of the (non-negative) raw intensities; both normalisations are invariant to such a map, so the network sees the
values the bundle's own pipeline would give it. A transform that depends on absolute raw intensities
(``ScaleIntensityRanged``), that volrob cannot place in that order, or that it does not know, is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from volrob.data.preprocess import PreprocessConfig
from volrob.errors import ConfigError
from volrob.inference.normalise import InputNorm, ZScoreNorm
from volrob.sources.bundle.config import BundleConfig
from volrob.sources.bundle.minmax import MinMaxNorm
from volrob.sources.bundle.steps import Step, read_compose

NO_OPS = ("LoadImage", "EnsureChannelFirst", "AddChannel", "EnsureType", "ToTensor", "ToNumpy", "ToDevice",
          "ToMetaTensor", "FromMetaTensor", "Identity", "CopyItems", "DeleteItems", "SelectItems", "ConcatItems",
          "CastToType")
"""Loading and bookkeeping: no effect on values or geometry (a ``dtype`` must stay float32)."""
GEOMETRY = ("Orientation", "Spacing", "CropForeground")
"""In the order volrob applies them."""
INTENSITY = ("NormalizeIntensity", "ScaleIntensity")
SUPPORTED = "Orientationd, Spacingd, CropForegroundd, NormalizeIntensityd, ScaleIntensityd and loaders / type casts"
_RAS_LABELS = [["L", "R"], ["P", "A"], ["I", "S"]]
_FLOAT32 = {"float32", "float", "torch.float32", "np.float32", "numpy.float32"}
_READERS = {None, "NibabelReader", "ITKReader", "nibabelreader", "itkreader"}


@dataclass(frozen=True)
class NormSpec:
    """The network's intensity normalisation, built once the number of channels is known."""

    kind: str
    channel_wise: bool
    options: dict[str, Any]
    key: str
    transform: str

    def build(self, channels: int, cfg: BundleConfig) -> InputNorm:
        if not self.channel_wise and channels > 1:
            raise cfg.error(self.key, f"{self.transform}: channel_wise=false pools the channels' statistics, "
                                      "which the per-channel [0, 1] scaling of the attack space changes; only "
                                      "channel_wise=true is exact")
        if self.kind == "zscore":
            return ZScoreNorm(channels, mask=self.options["mask"], zero_std="one")
        return MinMaxNorm(channels, minv=self.options["minv"], maxv=self.options["maxv"])


@dataclass
class MappedPreprocessing:
    """What the bundle's preprocessing became: volrob's data-side config, the predictor's normalisation, and a
    record of every transform."""

    config: PreprocessConfig
    norm: NormSpec
    record: list[dict[str, Any]] = field(default_factory=list)


def map_preprocessing(cfg: BundleConfig, key: str = "preprocessing", image: str = "image") -> MappedPreprocessing:
    """Map the Compose entry ``key`` for data key ``image`` (see the module docstring)."""
    geo: dict[str, Any] = {"orientation": None, "spacing": None, "crop_foreground": False, "crop_margin": 0}
    norm: NormSpec | None = None
    record: list[dict[str, Any]] = []
    done: list[str] = []
    for step in read_compose(cfg, key):
        entry = {"transform": step.name, "key": step.key}
        record.append(entry)
        if not step.touches(image):
            entry["as"] = f"not applied to {image!r}"
            continue
        kind = step.kind
        if kind in NO_OPS:
            _no_op(step)
            entry["as"] = "no-op"
        elif kind in GEOMETRY:
            if norm is not None:
                raise step.error("comes after the intensity normalisation; volrob resamples and crops first")
            later = [k for k in done if GEOMETRY.index(k) >= GEOMETRY.index(kind)]
            if later:
                raise step.error(f"comes after {later[-1]}; volrob applies orientation, spacing and foreground crop "
                                 "once each, in that order")
            done.append(kind)
            entry["as"] = _GEOMETRY[kind](step, image, geo)
        elif kind in INTENSITY:
            if norm is not None:
                raise step.error("a second intensity normalisation; volrob supports one")
            norm = _INTENSITY[kind](step)
            entry["as"] = f"{norm.kind} normalisation inside the predictor {norm.options}"
        elif kind.startswith("ScaleIntensityRange"):
            raise step.error("maps fixed raw intensities to a range; volrob's [0, 1] attack space is rescaled per "
                             f"case, so this cannot be reproduced exactly (supported: {SUPPORTED})")
        else:
            raise step.error(f"transform not supported (supported: {SUPPORTED})")
    if norm is None:
        raise cfg.error(key, "no intensity normalisation (NormalizeIntensityd or ScaleIntensityd): the network would "
                             "see raw intensities, which volrob's per-case [0, 1] attack space cannot reproduce")
    try:
        config = PreprocessConfig(scaling="linear", **geo)
    except ConfigError as err:
        raise cfg.error(key, str(err)) from None
    return MappedPreprocessing(config, norm, record)


def _no_op(step: Step) -> None:
    if "dtype" in step.args:
        _require_float32(step, step.get("dtype"))
    if step.kind == "LoadImage":
        allowed = {"reader", "dtype", "meta_keys", "meta_key_postfix", "overwriting", "image_only",
                   "ensure_channel_first", "simple_keys", "prune_meta_pattern", "prune_meta_sep",
                   "allow_missing_keys", "expanduser"}
        extra = sorted(set(step.args) - allowed - {"keys"})
        if extra:
            raise step.error(f"reader options {extra} are not supported (they may reorder or resample the image)")
        reader = step.get("reader")
        if reader not in _READERS:
            raise step.error(f"reader {reader!r} is not supported (NibabelReader or ITKReader)")
    if step.kind == "ConcatItems" and step.get("dim") != 0:
        raise step.error("only concatenation along the channel axis (dim 0) is supported")


def _require_float32(step: Step, dtype: Any) -> None:
    text = dtype if isinstance(dtype, str) else getattr(dtype, "__name__", None) or str(dtype)
    if dtype is not None and text not in _FLOAT32:
        raise step.error(f"dtype {text!r} would change the intensities; only float32 is supported")


def _orientation(step: Step, image: str, geo: dict[str, Any]) -> str:
    step.require_defaults({"axcodes", "labels", "allow_missing_keys"})
    axcodes = step.get("axcodes")
    if not isinstance(axcodes, str) or len(axcodes) != 3:
        raise step.error(f"axcodes must be three axis codes like 'RAS', got {axcodes!r}")
    labels = step.get("labels")
    if labels is not None and (not isinstance(labels, list | tuple)
                               or [list(p) if isinstance(p, list | tuple) else p for p in labels] != _RAS_LABELS):
        raise step.error(f"labels {labels!r} are not supported (MONAI's default L/R, P/A, I/S)")
    geo["orientation"] = axcodes.upper()
    return f"orientation {axcodes.upper()}"


def _spacing(step: Step, image: str, geo: dict[str, Any]) -> str:
    step.require_defaults({"pixdim", "mode", "dtype", "allow_missing_keys"}, image)
    pixdim = step.get("pixdim")
    values = [pixdim] if isinstance(pixdim, int | float) and not isinstance(pixdim, bool) else pixdim
    if (not isinstance(values, list | tuple) or not values
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values)):
        raise step.error(f"pixdim must be positive numbers, got {pixdim!r}")
    spacing = [float(v) for v in (list(values) + [values[-1]] * 3)[:3]]
    mode = getattr(step.get("mode", image), "value", step.get("mode", image))
    if mode != "bilinear":
        raise step.error(f"mode {mode!r} for {image!r} is not supported (volrob resamples images bilinearly)")
    geo["spacing"] = tuple(spacing)
    return f"spacing {spacing}"


def _crop(step: Step, image: str, geo: dict[str, Any]) -> str:
    if "select_fn" in step.args:
        raise step.error("a custom select_fn is not supported (volrob crops to voxels > 0 in any channel)")
    step.require_defaults({"source_key", "margin", "allow_smaller", "mode", "start_coord_key", "end_coord_key",
                           "allow_missing_keys"}, image)
    if step.get("source_key") != image:
        raise step.error(f"source_key must be {image!r}, got {step.get('source_key')!r}")
    margin = step.get("margin")
    margins = margin if isinstance(margin, list | tuple) else [margin]
    if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in margins) or len(set(margins)) != 1:
        raise step.error(f"margin must be one non-negative integer for every axis, got {margin!r}")
    if step.get("allow_smaller") is not True:
        raise step.error("allow_smaller=false (MONAI's default) pads past the image border; volrob crops inside the "
                         "image (allow_smaller=true), so set allow_smaller: true in the bundle if that is acceptable")
    geo["crop_foreground"], geo["crop_margin"] = True, int(margins[0])
    return f"crop to foreground, margin {margins[0]}"


def _normalize(step: Step) -> NormSpec:
    step.require_defaults({"nonzero", "channel_wise", "dtype", "allow_missing_keys"})
    _require_float32(step, step.get("dtype"))
    nonzero, channel_wise = step.get("nonzero"), step.get("channel_wise")
    if not isinstance(nonzero, bool) or not isinstance(channel_wise, bool):
        raise step.error("nonzero and channel_wise must be true or false")
    return NormSpec("zscore", channel_wise, {"mask": "channel" if nonzero else "all"}, step.key, step.name)


def _scale(step: Step) -> NormSpec:
    step.require_defaults({"minv", "maxv", "channel_wise", "dtype", "allow_missing_keys"})
    _require_float32(step, step.get("dtype"))
    minv, maxv, channel_wise = step.get("minv"), step.get("maxv"), step.get("channel_wise")
    for name, v in (("minv", minv), ("maxv", maxv)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise step.error(f"{name} must be a number or null, got {v!r}")
    if minv is None and maxv is None:
        raise step.error("scaling by a factor depends on raw intensities; give minv and maxv")
    if not isinstance(channel_wise, bool):
        raise step.error("channel_wise must be true or false")
    return NormSpec("minmax", channel_wise, {"minv": minv, "maxv": maxv}, step.key, step.name)


_GEOMETRY = {"Orientation": _orientation, "Spacing": _spacing, "CropForeground": _crop}
_INTENSITY = {"NormalizeIntensity": _normalize, "ScaleIntensity": _scale}
