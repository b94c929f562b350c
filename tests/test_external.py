"""External models: factory import, safe weight loading, strict fit, attack CLI with --model."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from volrob.cli.main import main
from volrob.errors import CheckpointError, ConfigError
from volrob.external import import_factory, load_module, read_state_dict

UNET = "monai.networks.nets:UNet"
ARGS = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "channels": (4, 8, 16), "strides": (2, 2)}


def test_import_factory() -> None:
    from monai.networks.nets import UNet

    assert import_factory(UNET) is UNet
    for bad, frag in [("monai.networks.nets.UNet", "package.module:factory"), ("no_such_pkg_xyz:f", "cannot import"),
                      ("monai.networks.nets:Nope", "no attribute"), ("monai:__version__", "not callable")]:
        with pytest.raises(ConfigError, match=frag):
            import_factory(bad)


def test_weights_round_trip_and_nesting(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net, _ = load_module(UNET, **ARGS)
    plain, nested = tmp_path / "w.pt", tmp_path / "n.pt"
    torch.save(net.state_dict(), plain)
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, nested)
    for path in (plain, nested):
        loaded, sha = load_module(UNET, path, **ARGS)
        assert len(sha or "") == 64 and not loaded.training
        for k, v in net.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v)


def test_bad_weights(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save(load_module(UNET, **{**ARGS, "channels": (8, 16, 32)})[0].state_dict(), other)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_module(UNET, other, **ARGS)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="not a torch zip archive"):
        read_state_dict(junk)

    class Evil:
        def __reduce__(self):  # pragma: no cover
            return (os.system, ("true",))

    evil = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"w": Evil()}, buf)
    evil.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(evil)
    notdict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(CheckpointError, match="state dict"):
        read_state_dict(notdict)
    with pytest.raises(ConfigError, match="bad arguments"):
        load_module(UNET, bogus=1)


def test_attack_cli_with_external_model(synth_manifest: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    net, _ = load_module(UNET, **ARGS)
    weights = tmp_path / "w.pt"
    torch.save(net.state_dict(), weights)
    margs = [x for k, v in ARGS.items() for x in ("--model-arg", f"{k}={list(v) if isinstance(v, tuple) else v}")]
    code = main(["attack", "--model", UNET, "--weights", str(weights), *margs, "--roi", "32,32,32",
                 "--manifest", str(synth_manifest), "--split", "val", "--attack", "fgsm", "--eps", "4",
                 "-o", str(tmp_path / "out"), "--no-volumes", "--quiet"])
    assert code == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (df["model"] == "UNet").all() and (df["model_sha256"] == sha).all()  # labelled by the factory's name
    origin = json.loads((tmp_path / "out" / "run.json").read_text())["models"]["UNet"]["origin"]
    assert origin["model"] == UNET and origin["weights"] == str(weights.resolve())
    code = main(["attack", "--checkpoint", str(weights), "--weights", str(weights), "--manifest", str(synth_manifest),
                 "--attack", "fgsm", "-o", str(tmp_path / "x"), "--quiet"])
    assert code == 2 and "--weights and --model-arg go with --model" in capsys.readouterr().err
