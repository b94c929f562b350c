"""A bundle config read as data or, when the bundle is trusted, through MONAI's own ``ConfigParser``.

A bundle config is code: ``$`` strings are Python expressions, ``_target_`` entries instantiate classes and ``%``
macros pull in other files. Untrusted (the default), the file is plain JSON/YAML data and only plain values are read
from it: literals, and ``@`` references to entries that are themselves plain (resolved here, never by MONAI).
Anything else is refused with a line naming the key. Trusted, values come from ``ConfigParser`` (expressions
evaluated, components instantiated), exactly as MONAI would run the bundle.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from volrob.errors import ConfigError
from volrob.sources.bundle.files import read_data

SEP = "::"
TRUST_HINT = "pass --trust-bundle (options.trust: true) if the bundle is trusted"
_REF = re.compile(r"@(?:\w*)(?:(?:::|#)\w*)*")


class BundleConfig:
    """Entries of one config file by MONAI id (``"preprocessing::transforms::0"``)."""

    def __init__(self, path: Path, *, trusted: bool, bundle_root: Path | None = None) -> None:
        self.path, self.trusted = path, trusted
        self._parser: Any = None
        if trusted:
            from monai.bundle import ConfigParser

            parser = ConfigParser()
            try:
                parser.read_config(str(path))
                if bundle_root is not None and "bundle_root" in parser.config:
                    parser["bundle_root"] = str(bundle_root)
                parser.parse()
            except Exception as err:  # (MONAI raises anything a bad config makes it raise)
                raise self.error("", f"MONAI could not parse it ({_one_line(err)})") from None
            self._parser = parser
            self._data: dict[str, Any] = parser.get()
        else:
            self._data = read_data(path)

    def error(self, key: str, problem: str) -> ConfigError:
        """A one-line error naming this file and ``key``."""
        return ConfigError(f"{key}: {problem}" if key else problem, path=self.path)

    def refuse(self, key: str, what: str) -> ConfigError:
        """The error for content that would run code (or read other files) without trust."""
        return self.error(key, f"{what}; it is not run without trust: {TRUST_HINT}")

    def has(self, key: str) -> bool:
        try:
            self._raw(key)
        except KeyError:
            return False
        return True

    def raw(self, key: str) -> Any:
        """The entry at ``key`` as written (after MONAI's macro expansion when trusted)."""
        try:
            return self._raw(key)
        except KeyError:
            raise self.error(key, "no such entry") from None

    def node(self, key: str) -> tuple[str, Any]:
        """``(id, content)`` of the structural entry at ``key`` (a component or a list of them), following a
        whole-string ``@`` reference; a ``$`` expression or ``%`` macro in its place cannot be read as structure."""
        seen: list[str] = []
        value = self.raw(key)
        while isinstance(value, str):
            self._check_special(key, value)
            if not value.startswith("@"):
                break
            key = self._target_id(key, value)
            if key in seen:
                raise self.error(key, "circular @ reference")
            seen.append(key)
            value = self.raw(key)
        return key, value

    def value(self, key: str) -> Any:
        """The plain value at ``key``: the evaluated content when trusted; untrusted, literals with ``@``
        references resolved (a ``$`` expression, a ``%`` macro or a nested component is refused)."""
        if self._parser is not None:
            try:
                return self._parser.get_parsed_content(key)
            except Exception as err:
                raise self.error(key, f"MONAI could not evaluate it ({_one_line(err)})") from None
        return self._literal(self.raw(key), key, ())

    def _literal(self, value: Any, key: str, seen: tuple[str, ...]) -> Any:
        if isinstance(value, str):
            self._check_special(key, value)
            if value.startswith("@") and _REF.fullmatch(value):
                target = self._target_id(key, value)
                if target in seen:
                    raise self.error(key, "circular @ reference")
                return self._literal(self.raw(target), target, (*seen, target))
            return value
        if isinstance(value, list):
            return [self._literal(v, f"{key}{SEP}{i}", seen) for i, v in enumerate(value)]
        if isinstance(value, dict):
            if "_target_" in value:
                raise self.refuse(key, f"a component ({value['_target_']!r}) is instantiated code")
            return {k: self._literal(v, f"{key}{SEP}{k}", seen) for k, v in value.items()}
        if value is None or isinstance(value, bool | int | float):
            return value
        raise self.error(key, f"unexpected value of type {type(value).__name__}")

    def _check_special(self, key: str, value: str) -> None:
        if self.trusted:
            if value.startswith("$"):
                raise self.error(key, "a $ expression here cannot be mapped; write the entry out in the config")
            return
        if value.startswith("$"):
            raise self.refuse(key, f"{_short(value)} is a $ expression (Python code)")
        if value.startswith("%"):
            raise self.refuse(key, f"{_short(value)} is a % macro (it reads other config content)")

    def _target_id(self, key: str, ref: str) -> str:
        """The absolute id a reference ``@id`` (``#`` or ``::`` separators, relative ``@::x`` too) points to."""
        ref = ref[1:].replace("#", SEP)
        if not ref.startswith(SEP):
            return ref
        depth = len(ref) - len(ref.lstrip(":"))
        if depth % 2:
            raise self.error(key, f"malformed reference @{ref}")
        up, name = depth // 2, ref.lstrip(":")
        here = key.split(SEP)
        if up > len(here):
            raise self.error(key, f"reference @{ref} points above the config")
        return SEP.join([*here[:-up], name]) if here[:-up] else name

    def _raw(self, key: str) -> Any:
        node: Any = self._data
        if not key:
            return node
        for part in key.replace("#", SEP).split(SEP):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise KeyError(key)
        return node


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= n else text[: n - 3] + "...")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__
