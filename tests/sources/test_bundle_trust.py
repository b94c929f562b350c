"""A bundle config is code. Untrusted (the default), volrob reads it as data: a ``$`` expression, a ``_target_``
outside ``monai.networks.nets``, a ``%`` macro or a ``_requires_`` in what it reads is refused with one line naming
the key, and nothing runs (each payload would create a file). Trusted, MONAI's ConfigParser runs the same bundle."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from helpers.bundle_folder import TINY_SEGRESNET, brats_config, metadata, seeded_state, write_bundle

from volrob.errors import ConfigError
from volrob.sources import load_source


def _touch(proof: Path) -> str:
    """A ``$`` expression that creates ``proof`` and evaluates to 4."""
    return f"$__import__('pathlib').Path({str(proof)!r}).touch() or 4"


def _bundle(folder: Path, edit: Any) -> Path:
    cfg = brats_config()
    edit(cfg)
    return write_bundle(folder, cfg, meta=metadata(), state=seeded_state(TINY_SEGRESNET))


def _refused(folder: Path, key: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_source(f"bundle:{folder}")
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(folder / "configs" / "inference.json"))
    assert f"{key}:" in text and "--trust-bundle" in text and "options.trust" in text
    return text


def test_dollar_expression_refused_untrusted_and_run_trusted(tmp_path: Path) -> None:
    proof = tmp_path / "proof"
    folder = _bundle(tmp_path / "b", lambda c: c["network_def"].update(init_filters=_touch(proof)))
    text = _refused(folder, "network_def::init_filters")
    assert "$ expression" in text and not proof.exists()
    src = load_source(f"bundle:{folder}", options={"trust": True})
    assert proof.exists()  # trusted: MONAI evaluated it, and the bundle loads with its weights
    assert src.origin["trusted"] is True and src.origin["network"]["built_by"].endswith("(trusted)")
    assert src.predictor.output_mode == "regions"


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "subprocess.call",
                                    "monai.networks.blocks.Convolution", "monai.networks.nets.segresnet.nn",
                                    "monai.networks.nets._unknown"])
def test_foreign_network_target_refused(tmp_path: Path, target: str) -> None:
    proof = tmp_path / "proof"
    folder = _bundle(tmp_path / "b", lambda c: c.update(network_def={
        "_target_": target, "command": f"touch {proof}", "source": f"open({str(proof)!r}, 'w')"}))
    text = _refused(folder, "network_def::_target_")
    assert "monai.networks.nets" in text and not proof.exists()


def test_macro_refused(tmp_path: Path) -> None:
    proof = tmp_path / "proof"
    folder = _bundle(tmp_path / "b", lambda c: c.update(network_def="%configs/other.json::net"))
    other = {"net": copy.deepcopy(TINY_SEGRESNET) | {"init_filters": _touch(proof)}}
    (folder / "configs" / "other.json").write_text(json.dumps(other))
    text = _refused(folder, "network_def")
    assert "% macro" in text and not proof.exists()


@pytest.mark.parametrize(("edit", "key"), [
    (lambda c, p: c["network_def"].update(norm=["GROUP", {"num_groups": _touch(p)}]),
     "network_def::norm::1::num_groups"),
    (lambda c, p: c["network_def"].update(_requires_=_touch(p)), "network_def::_requires_"),
    (lambda c, p: c["network_def"].update(act={"_target_": "builtins.exec", "x": _touch(p)}), "network_def::act"),
    (lambda c, p: c["inferer"].update(roi_size=f"$[{_touch(p)[1:]}] * 3"), "inferer::roi_size"),
    (lambda c, p: c["preprocessing"]["transforms"][2].update(nonzero=_touch(p)),
     "preprocessing::transforms::2::nonzero"),
    (lambda c, p: c.update(preprocessing=f"$[{_touch(p)[1:]}]"), "preprocessing"),
    (lambda c, p: c["network_def"].update(pretrained=True), "network_def::pretrained"),
])
def test_code_anywhere_volrob_reads_is_refused(tmp_path: Path, edit: Any, key: str) -> None:
    proof = tmp_path / "proof"
    folder = _bundle(tmp_path / "b", lambda c: edit(c, proof))
    _refused(folder, key)
    assert not proof.exists()


def test_code_in_entries_volrob_does_not_read_never_runs(tmp_path: Path) -> None:
    """The real bundles' ``$`` entries (imports, device, network, evaluating) and a ``$lambda`` after the output
    is discrete (with options.output, which skips postprocessing) load untrusted, and none of them runs."""
    proof = tmp_path / "proof"

    def edit(c: dict[str, Any]) -> None:
        c["imports"].append(_touch(proof))
        c["evaluating"] = [_touch(proof), "$@evaluator.run()"]
        c["network"] = f"$({_touch(proof)[1:]}) and @network_def"
        c["postprocessing"]["transforms"].append({"_target_": "Lambdad", "keys": "pred", "func": _touch(proof)})

    folder = _bundle(tmp_path / "b", edit)
    with pytest.raises(ConfigError, match=r"postprocessing::transforms::4: Lambdad: changes the discrete prediction"):
        load_source(f"bundle:{folder}")
    src = load_source(f"bundle:{folder}", options={"output": "regions"})
    assert src.predictor.output_mode == "regions" and src.origin["trusted"] is False
    assert not proof.exists()


def test_trusted_values_map_like_literals(tmp_path: Path) -> None:
    """Trusted, MONAI evaluates the expressions volrob then maps: the same model as the literal bundle."""
    import torch

    def exprs(c: dict[str, Any]) -> None:
        c["network_def"]["init_filters"] = "$2 * 2"
        c["inferer"]["roi_size"] = "$[32] * 3"
        c["roi"] = 16
        c["inferer"]["sw_batch_size"] = "@roi"
        c["preprocessing"]["transforms"][2]["nonzero"] = "$bool(1)"

    def literal(c: dict[str, Any]) -> None:
        c["inferer"]["sw_batch_size"] = 16

    trusted = load_source(f"bundle:{_bundle(tmp_path / 't', exprs)}", options={"trust": True})
    plain = load_source(f"bundle:{_bundle(tmp_path / 'p', literal)}")
    assert trusted.predictor.window == plain.predictor.window and trusted.predictor.window.sw_batch_size == 16
    assert trusted.preprocessing == plain.preprocessing and trusted.sha256 == plain.sha256
    assert trusted.origin["norm"] == plain.origin["norm"]
    x = torch.rand(1, 4, 32, 32, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(trusted.predictor(x), plain.predictor(x))
