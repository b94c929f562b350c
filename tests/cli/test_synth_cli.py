"""``volrob synth``: writes a loadable data set, one-line errors with exit code 2, never overwrites silently."""

from __future__ import annotations

import pytest

from volrob.cli import main as cli
from volrob.data.manifest import load_manifest


@pytest.fixture(autouse=True)
def only_synth(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("synth",))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["synth", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_synth_writes_data_set_and_prints_summary(tmp_path, capsys):
    out_dir = tmp_path / "data"
    code, out, err = _run(capsys, "-o", str(out_dir), "--cases", "3", "--shape", "40", "36", "32", "--seed", "7")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "3 cases" in lines[0] and "train 1, val 1, test 1" in lines[0]
    manifest = load_manifest(out_dir / "manifest.json")
    assert len(manifest.cases) == 3 and {c.split for c in manifest.cases} == {"train", "val", "test"}
    assert all(manifest.resolve(c.label).is_file() for c in manifest.cases)


def test_keep_skull_and_fractions_are_passed_through(tmp_path, capsys):
    out_dir = tmp_path / "d"
    code, out, _ = _run(capsys, "-o", str(out_dir), "--cases", "4", "--shape", "32", "32", "32",
                        "--val-fraction", "0", "--test-fraction", "0.5", "--keep-skull")
    assert code == 0 and "train 2, val 0, test 2" in out


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--cases", "0"], "cases"),
        (["--shape", "16", "40", "40"], "shape side"),
        (["--seed", "-3"], "seed"),
        (["--val-fraction", "1.0"], "val_fraction"),
        (["--val-fraction", "0.6", "--test-fraction", "0.5"], "val_fraction + test_fraction"),
    ],
)
def test_bad_arguments_give_exit_2_and_one_line(tmp_path, capsys, args, word):
    out_dir = tmp_path / "data"
    code, out, err = _run(capsys, "-o", str(out_dir), "--shape", "32", "32", "32", *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("volrob synth: error:") and word in lines[0]
    assert not out_dir.exists()


def test_unparseable_argument_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["synth", "-o", str(tmp_path / "x"), "--cases", "many"])
    assert exc.value.code == 2
    assert "--cases" in capsys.readouterr().err


def test_refuses_non_empty_directory_unless_forced(tmp_path, capsys):
    out_dir = tmp_path / "data"
    out_dir.mkdir()
    (out_dir / "precious.nii.gz").write_bytes(b"keep me")
    code, out, err = _run(capsys, "-o", str(out_dir), "--cases", "1", "--shape", "32", "32", "32")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert str(out_dir) in err and "--force" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["precious.nii.gz"]
    code, _, err = _run(capsys, "-o", str(out_dir), "--cases", "1", "--shape", "32", "32", "32", "--force")
    assert code == 0 and (out_dir / "manifest.json").is_file()
    assert (out_dir / "precious.nii.gz").read_bytes() == b"keep me"
