"""The transforms of a bundle's ``Compose`` entry as data: each one's MONAI class name and its arguments, read one by
one (nothing is instantiated), with the checks every mapping needs: which keys it touches, and that the arguments
volrob does not map keep MONAI's defaults."""

from __future__ import annotations

import inspect
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from volrob.errors import ConfigError
from volrob.sources.bundle.config import SEP, BundleConfig

_COMPONENT_KEYS = {"_target_", "_desc_", "_disabled_", "_requires_", "_mode_"}
PER_KEY_ARGS = {"mode", "padding_mode", "align_corners", "dtype", "sigmoid", "softmax", "other", "argmax",
                "to_onehot", "threshold", "rounding"}
"""Arguments that a dictionary transform may give once per key (a list as long as ``keys``)."""


@dataclass(frozen=True)
class Step:
    """One transform of a Compose: where it is (``key``), its class name and its (unread) arguments."""

    cfg: BundleConfig
    key: str
    name: str
    args: tuple[str, ...]

    @property
    def kind(self) -> str:
        """The transform's name without the dictionary suffix (``Spacingd`` -> ``Spacing``)."""
        return self.name[:-1] if self.is_dict and self.name.endswith("d") else self.name

    @property
    def is_dict(self) -> bool:
        """A dictionary transform (it acts on named data entries)."""
        from monai.transforms import MapTransform

        cls = _monai_transform(self.name)
        return cls is not None and issubclass(cls, MapTransform)

    def error(self, problem: str) -> ConfigError:
        return self.cfg.error(self.key, f"{self.name}: {problem}")

    def keys(self) -> list[str] | None:
        """The data keys of a dictionary transform (None for an array transform: it sees the image)."""
        if not self.is_dict:
            return None
        if "keys" not in self.args:
            raise self.error("no keys given")
        keys = self.cfg.value(f"{self.key}{SEP}keys")
        keys = [keys] if isinstance(keys, str) else keys
        if not isinstance(keys, list | tuple) or not all(isinstance(k, str) for k in keys):
            raise self.error(f"keys must be a name or a list of names, got {keys!r}")
        return list(keys)

    def touches(self, key: str) -> bool:
        """Whether the transform acts on the data entry ``key`` (an array transform acts on its input)."""
        keys = self.keys()
        return keys is None or key in keys

    def get(self, arg: str, key: str | None = None) -> Any:
        """Argument ``arg`` (MONAI's default when absent); for a per-key argument given as a list, the entry of data
        key ``key``."""
        if arg not in self.args:
            return self.default(arg)
        value = self.cfg.value(f"{self.key}{SEP}{arg}")
        if key is not None and arg in PER_KEY_ARGS and isinstance(value, list | tuple):
            keys = self.keys()
            if keys is not None and len(value) == len(keys):
                return value[keys.index(key)]
        return value

    def default(self, arg: str) -> Any:
        """MONAI's default of ``arg`` for this transform (``inspect.Parameter.empty`` when it has none)."""
        cls = _monai_transform(self.name)
        if cls is None:
            return inspect.Parameter.empty
        param = inspect.signature(cls).parameters.get(arg)
        return inspect.Parameter.empty if param is None else param.default

    def require_defaults(self, handled: Collection[str], key: str | None = None) -> None:
        """Every argument not in ``handled`` must equal MONAI's default (it would change the numbers otherwise)."""
        for arg in self.args:
            if arg in handled or arg == "keys":
                continue
            default = self.default(arg)
            if default is inspect.Parameter.empty:
                raise self.error(f"argument {arg!r} is not one volrob can map")
            value = self.get(arg, key)
            if not _same(value, default):
                raise self.error(f"{arg}={value!r} is not supported (volrob follows MONAI's default "
                                 f"{_plain(default)!r})")


def read_compose(cfg: BundleConfig, key: str) -> list[Step]:
    """The transforms of the Compose entry ``key`` (a single transform counts as a Compose of one); a component that
    is disabled (``_disabled_: true``) is left out."""
    key, node = cfg.node(key)
    if isinstance(node, dict) and _name(cfg, key, node) == "Compose":
        if "transforms" not in node:
            raise cfg.error(key, "Compose without transforms")
        key, node = cfg.node(f"{key}{SEP}transforms")
    items = node if isinstance(node, list) else [node]
    base = key if isinstance(node, list) else None
    steps = []
    for i in range(len(items)):
        item_key, item = cfg.node(f"{base}{SEP}{i}") if base is not None else (key, node)
        if not isinstance(item, dict) or "_target_" not in item:
            raise cfg.error(item_key, "expected a transform (a mapping with _target_)")
        name = _name(cfg, item_key, item)
        if _component_flag(cfg, item_key, item, "_disabled_"):
            continue
        if "_requires_" in item and not cfg.trusted:
            raise cfg.refuse(f"{item_key}{SEP}_requires_", "_requires_ runs other entries first")
        mode = cfg.value(f"{item_key}{SEP}_mode_") if "_mode_" in item else "default"
        if mode != "default":
            raise cfg.error(item_key, f"_mode_ {mode!r} is not supported (only 'default')")
        steps.append(Step(cfg, item_key, name, tuple(k for k in item if k not in _COMPONENT_KEYS)))
    return steps


def component_name(cfg: BundleConfig, key: str, node: dict[str, Any], package: str) -> str:
    """The class name of component ``node``: a bare name or a dotted path inside ``package``."""
    target = node.get("_target_")
    if not isinstance(target, str) or not target:
        raise cfg.error(key, f"_target_ must be a class name, got {target!r}")
    if "." in target and not target.startswith(package + "."):
        raise cfg.error(key, f"_target_ {target!r} is not a class of {package}")
    return target.rpartition(".")[2]


def _name(cfg: BundleConfig, key: str, node: dict[str, Any]) -> str:
    name = component_name(cfg, key, node, "monai.transforms")
    if _monai_transform(name) is None:
        raise cfg.error(key, f"_target_ {node['_target_']!r} is not a MONAI transform; volrob maps MONAI transforms "
                             "only")
    return name


def _component_flag(cfg: BundleConfig, key: str, node: dict[str, Any], flag: str) -> bool:
    if flag not in node:
        return False
    value = cfg.value(f"{key}{SEP}{flag}")
    if not isinstance(value, bool):
        raise cfg.error(f"{key}{SEP}{flag}", f"expected true or false, got {value!r}")
    return value


def _monai_transform(name: str) -> type | None:
    import monai.transforms

    obj = getattr(monai.transforms, name, None)
    return obj if inspect.isclass(obj) and not name.startswith("_") else None


def _plain(value: Any) -> Any:
    """Enums as their values (``GridSampleMode.BILINEAR`` -> ``"bilinear"``)."""
    return getattr(value, "value", value)


def _same(value: Any, default: Any) -> bool:
    value, default = _plain(value), _plain(default)
    if isinstance(value, list | tuple) and isinstance(default, list | tuple):
        return len(value) == len(default) and all(_same(a, b) for a, b in zip(value, default, strict=True))
    if isinstance(value, list | tuple) and value:  # one value per axis, each the scalar default
        return all(_same(v, default) for v in value)
    try:
        return bool(value == default)
    except Exception:  # (arrays and other objects without a plain ==)
        return False
