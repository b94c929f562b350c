"""End to end: ``volrob attack --model bundle:FOLDER`` on synthetic cases, ``--trust-bundle`` for a bundle whose
config runs code, and bad bundles as one line with exit code 2 and nothing written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from helpers.bundle_folder import TINY_SEGRESNET, brats_config, metadata, seeded_state, write_bundle

from volrob.cli.main import main


def _run(command: str, bundle: Path, manifest: Path, out: Path, *args: str) -> int:
    return main([command, "--model", f"bundle:{bundle}", "--manifest", str(manifest), "--split", "val",
                 "-o", str(out), "--threads", "1", "--quiet", *args])


def test_attack_with_a_bundle(synth_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              one_thread: None) -> None:
    bundle = write_bundle(tmp_path / "brats_bundle", brats_config(), meta=metadata())
    code = _run("attack", bundle, synth_manifest, tmp_path / "out", "--attack", "pgd", "--eps", "8", "--steps", "2",
                "--no-volumes", "--roi", "48,48,48")  # the run's ROI overrides the bundle's 32^3: one window
    assert code == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(df) == 9 and (df["model"] == "bundle_brats_bundle").all()
    assert (df["linf_255"] <= 8 + 1e-3).all() and (df["linf_255"] > 0).all()
    sha = hashlib.sha256((bundle / "models" / "model.pt").read_bytes()).hexdigest()
    assert (df["model_sha256"] == sha).all()
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["models"][0]["model"] == f"bundle:{bundle}"
    record = json.dumps(run)  # what the run recorded about the model: origin, window, preprocessing
    assert str(bundle / "configs" / "inference.json") in record and '"scaling": "linear"' in record
    assert run["config"]["models"][0]["roi_size"] == [48, 48, 48]


def test_trust_bundle_flag(synth_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           one_thread: None) -> None:
    proof = tmp_path / "proof"
    cfg = brats_config()
    cfg["network_def"]["init_filters"] = f"$__import__('pathlib').Path({str(proof)!r}).touch() or 4"
    bundle = write_bundle(tmp_path / "code_bundle", cfg, meta=metadata(), state=seeded_state(TINY_SEGRESNET))
    assert _run("evaluate", bundle, synth_manifest, tmp_path / "refused") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "network_def::init_filters" in err and "--trust-bundle" in err
    assert not proof.exists() and not (tmp_path / "refused" / "results.csv").exists()
    assert _run("evaluate", bundle, synth_manifest, tmp_path / "trusted", "--trust-bundle") == 0
    assert proof.exists() and len(pd.read_csv(tmp_path / "trusted" / "results.csv")) == 9


def test_bad_bundle_is_one_line(synth_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(tmp_path / "b", brats_config(), meta=metadata())
    (bundle / "models" / "model.pt").write_bytes(b"garbage")
    assert _run("attack", bundle, synth_manifest, tmp_path / "x", "--attack", "fgsm") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.pt: not a torch zip archive" in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
