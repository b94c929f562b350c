"""Checkpoints: round trip, strict loading, architecture mismatch, corrupt and unsafe files."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from volrob import models
from volrob.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from volrob.data.preprocess import PreprocessConfig
from volrob.errors import CheckpointError
from volrob.inference.predictor import SlidingWindowConfig

CFG = {"in_channels": 4, "out_channels": 3, "roi_size": [32, 32, 32], "preset": "tiny"}


def make_ckpt(name: str = "unet") -> Checkpoint:
    torch.manual_seed(0)
    net = models.create(name, **CFG)
    return Checkpoint(
        model_name=name, model_config=dict(CFG), state_dict=net.state_dict(), preprocessing=PreprocessConfig(),
        normalisation={"mean": [0.3] * 4, "std": [0.2] * 4}, label_convention="brats2021", output_mode="regions",
        modalities=["t1", "t1ce", "t2", "flair"], inference=SlidingWindowConfig(roi_size=(32, 32, 32)),
        provenance={"seed": 0, "manifest_sha256": "ab" * 32, "epochs": 3, "val_dice": {"WT": 0.5}},
    )


def test_round_trip(tmp_path: Path) -> None:
    ckpt = make_ckpt()
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    back = load_checkpoint(path, expect_model="unet")
    assert back.model_name == "unet" and back.model_config == CFG
    assert back.preprocessing == ckpt.preprocessing and back.inference == ckpt.inference
    assert back.provenance == ckpt.provenance and back.modalities == ckpt.modalities
    assert back.sha256 == ckpt.sha256 and len(back.sha256 or "") == 64
    for k, v in ckpt.state_dict.items():
        assert torch.equal(back.state_dict[k], v)
    x = torch.rand(1, 4, 32, 32, 32)
    net = ckpt.build_model().eval()
    assert torch.equal(back.build_predictor()(x), back.build_predictor()(x))
    with torch.no_grad():
        assert torch.allclose(back.build_predictor()(x), net((x - 0.3) / 0.2))


def test_provenance_with_library_types_loads(tmp_path: Path) -> None:
    ckpt = make_ckpt()
    ckpt.provenance = {"torch": torch.__version__, "dice": np.float32(0.5), "where": tmp_path, "shape": (1, 2)}
    back = load_checkpoint(save_checkpoint(ckpt, tmp_path / "m.pt"))
    assert back.provenance == {"torch": str(torch.__version__), "dice": 0.5, "where": str(tmp_path),
                               "shape": [1, 2]}
    assert type(back.provenance["torch"]) is str


def test_unloadable_payload_never_written(tmp_path: Path) -> None:
    ckpt = make_ckpt()
    ckpt.training_state = {"rng": np.random.default_rng(0)}
    with pytest.raises(CheckpointError, match="refusing to save"):
        save_checkpoint(ckpt, tmp_path / "m.pt")
    assert not any(tmp_path.iterdir())


def test_plain_torch_load_with_weights_only(tmp_path: Path) -> None:
    path = save_checkpoint(make_ckpt(), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "volrob-checkpoint" and payload["model"]["name"] == "unet"


def test_expect_other_model(tmp_path: Path) -> None:
    path = save_checkpoint(make_ckpt(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="holds model 'unet', expected 'segresnet'") as info:
        load_checkpoint(path, expect_model="segresnet")
    assert str(path) in str(info.value)


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    ckpt = make_ckpt()
    ckpt.state_dict = models.create("segresnet", **CFG).state_dict()  # claims unet, carries segresnet weights
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    loaded = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="do not fit model 'unet'") as info:
        loaded.build_model()
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_file(tmp_path: Path) -> None:
    path = save_checkpoint(make_ckpt(), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):  # pragma: no cover - executed only by an unsafe loader
        return (os.system, ("echo pwned",))


def test_pickle_payload_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"format": "volrob-checkpoint", "x": _Payload()}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match=r"refused: holds a pickled (posix|nt).system object \(unsafe") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_raw_pickle_refused(tmp_path: Path) -> None:
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="raw pickle is refused"):
        load_checkpoint(path)


def test_not_a_volrob_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(models.create("unet", **CFG).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a volrob checkpoint"):
        load_checkpoint(path)


def test_bad_metadata(tmp_path: Path) -> None:
    payload = make_ckpt().to_payload()
    payload["labels"]["convention"] = "brats1999"
    path = tmp_path / "meta.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="invalid metadata"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_failed_save_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(make_ckpt(), tmp_path / "m.pt")
    before = path.read_bytes()
    ckpt = make_ckpt()

    def boom(self: Path, data: bytes) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(OSError):
        save_checkpoint(ckpt, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
