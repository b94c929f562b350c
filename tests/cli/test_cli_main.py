"""The command line: help everywhere, one-line errors with exit code 2, the main verbs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from volrob.cli.main import COMMANDS, main


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in COMMANDS)


@pytest.mark.parametrize("cmd", [*COMMANDS, "manifest build", "manifest check"])
def test_subcommand_help(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*cmd.split(), "--help"])
    assert info.value.code == 0
    assert "usage: volrob" in capsys.readouterr().out


def test_models_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("unet", "unetr", "swinunetr", "segresnet", "umamba"):
        assert name in out
    assert "102,2" in out  # UNETR paper preset: about 102 million parameters


def test_error_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    code = main(["evaluate", "--checkpoint", str(bad), "--manifest", str(tmp_path / "m.json"), "-o",
                 str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err


def test_console_entry_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "volrob.cli.main", "train", str(tmp_path / "none.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_and_evaluate_cli(synth_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = Path(__file__).resolve().parents[2] / "configs" / "unet.yaml"
    out = tmp_path / "run"
    sets = ["--set", f"data.manifest={synth_manifest}", "--set", f"output_dir={out}", "--set", "train.epochs=1",
            "--set", "inference.roi_size=[32,32,32]", "--set", "model.options.channels=[8,16,32,64]"]
    assert main(["train", str(cfg), *sets, "--quiet"]) == 0
    assert (out / "best.pt").is_file() and (out / "log.csv").is_file()
    assert main(["train", str(cfg), *sets, "--quiet"]) == 2  # refuses to overwrite
    assert "already holds a training run" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--manifest", str(synth_manifest), "--split",
                 "val", "-o", str(tmp_path / "ev"), "--quiet", "--stitch-on-cpu"]) == 0
    printed = capsys.readouterr().out
    assert "WT" in printed and "dice" in printed
    assert len(pd.read_csv(tmp_path / "ev" / "results.csv")) > 0


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """``volrob models | head -0``: the reader is gone before anything is written; no traceback, exit 141."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "volrob", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err and "BrokenPipe" not in err
