"""Reading an untrusted bundle config as data: ``@`` references (absolute, ``#`` and relative ids) resolved to plain
values as MONAI would resolve them; cycles, expressions, macros and components refused with the key named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from volrob.errors import ConfigError
from volrob.sources.bundle.config import BundleConfig

CONFIG = {
    "size": 32,
    "sizes": {"roi": [16, "@size", 8], "pair": ["@sizes::roi", "@sizes#roi::1"]},
    "net": {"_target_": "SegResNet", "in_channels": "@::sizes", "width": "@::channels", "channels": 4,
            "deep": {"a": "@::::channels", "b": "@::a"}},
    "text": "@ not a reference",
    "loop": {"a": "@loop::b", "b": "@loop::a"},
    "expr": ["$1 + 1"],
    "macro": "%other.json::x",
    "comp": {"_target_": "Identity"},
}


@pytest.fixture()
def cfg(tmp_path: Path) -> BundleConfig:
    (tmp_path / "c.json").write_text(json.dumps(CONFIG))
    return BundleConfig(tmp_path / "c.json", trusted=False)


@pytest.mark.parametrize("key", ["sizes::roi", "sizes::pair", "net::width", "net::deep::a", "net::deep::b", "text"])
def test_references_resolve_as_monai_resolves_them(cfg: BundleConfig, key: str) -> None:
    plain = {k: v for k, v in CONFIG.items() if k not in ("loop", "expr", "macro")}
    assert cfg.value(key) == ConfigParser(plain).get_parsed_content(key)


def test_node_follows_references_and_has(cfg: BundleConfig) -> None:
    assert cfg.node("sizes::pair::0") == ("sizes::roi", [16, "@size", 8])
    assert cfg.has("net::deep::a") and not cfg.has("net::nothing") and not cfg.has("sizes::roi::7")


@pytest.mark.parametrize(("key", "pattern"), [
    ("loop::a", "circular @ reference"),
    ("expr", r"expr::0: '\$1 \+ 1' is a \$ expression .*--trust-bundle"),
    ("macro", r"macro: '%other.json::x' is a % macro .*--trust-bundle"),
    ("comp", r"comp: a component \('Identity'\) is instantiated code.*--trust-bundle"),
    ("net::in_channels", "no such entry"),
    ("missing", "missing: no such entry"),
])
def test_refusals_name_the_key(cfg: BundleConfig, key: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        cfg.value(key)
    assert str(info.value).startswith(str(cfg.path)) and "\n" not in str(info.value)
