"""YAML configuration helpers: ``--set key.sub=value`` overrides and strict dataclass construction."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from volrob.errors import ConfigError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file does not exist", path=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML ({' '.join(str(err).split())})", path=path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of sections", path=path)
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested mapping, returning a new mapping."""
    out = _deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _unwrap(tp: Any) -> Any:
    """The non-None member of an ``X | None`` annotation (``tp`` itself otherwise)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def check_override_keys(cls: type, overrides: Sequence[str]) -> None:
    """ConfigError naming the override when a ``--set`` key names no field of the dataclass ``cls`` (sections of
    free-form mappings such as ``options`` or ``window`` accept any key; lists cannot be indexed)."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if not key:
            continue  # apply_overrides says what a well-formed override looks like
        tp: Any = cls
        for depth, part in enumerate(key.split(".")):
            tp = _unwrap(tp)
            if dataclasses.is_dataclass(tp):
                hints = typing.get_type_hints(tp)
                if part not in hints:
                    where = ".".join(key.split(".")[:depth]) or "the top level"
                    raise ConfigError(f"--set {item}: unknown key {part!r} in {where}; allowed: {sorted(hints)}")
                tp = hints[part]
            elif typing.get_origin(tp) in (list, tuple):
                parent = ".".join(key.split(".")[:depth])
                raise ConfigError(f"--set {item}: {parent} is a list; give the whole list, e.g. --set {parent}=[...]")
            else:
                break  # a mapping or a free-form value: any sub-key


def load_config(cls: type[T], path: str | Path, overrides: Sequence[str] = (),
                parse: Callable[[dict[str, Any]], T] | None = None) -> T:
    """Read a YAML file, apply ``--set`` overrides and build ``cls`` (see :func:`build_with_overrides`); errors
    are one line naming the override or the file."""
    return build_with_overrides(cls, read_yaml(path), overrides, parse, path=path)


def build_with_overrides(cls: type[T], data: dict[str, Any], overrides: Sequence[str] = (),
                         parse: Callable[[dict[str, Any]], T] | None = None, *, path: str | Path | None = None) -> T:
    """Apply ``--set`` overrides to ``data`` and build ``cls`` (with ``parse`` when given, else
    :func:`build_dataclass`). An override's own problem names the override; any other names ``path`` (the file the
    data came from) when there is one."""
    check_override_keys(cls, overrides)
    data = apply_overrides(data, overrides)
    try:
        return parse(data) if parse is not None else build_dataclass(cls, data)
    except ConfigError as err:
        text = str(err)
        for item in overrides:
            key = item.partition("=")[0].strip()
            if text == key or any(text.startswith(key + sep) for sep in (":", " ", ".", "[")):
                raise ConfigError(f"--set {item}: {text}") from None
        if path is None:
            raise
        raise ConfigError(text, path=path) from None


def _deepcopy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return build_dataclass(tp, value, where)
    if tp is Any:
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
        inner = args[0] if args else Any
        seq = [_coerce(v, inner, where) for v in value]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def build_dataclass(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Construct dataclass ``cls`` from a mapping: unknown keys and wrong types are one-line ConfigErrors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    prefix = f"{where}." if where else ""
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples/paths to JSON-serialisable plain values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
