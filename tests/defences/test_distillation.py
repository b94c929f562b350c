"""Defensive distillation: the teacher's loss at T, the student's soft labels at exactly the given T, its loss
against direct soft BCE / soft CE, teacher checks (file, defence, temperature, output mode), bad options."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from defences.tiny import MODES, assert_gradients_flow, make_batch, make_ctx, save_teacher

from volrob import defences
from volrob.errors import ConfigError


def teacher_logits(path: Path, x: torch.Tensor) -> torch.Tensor:
    """The teacher's logits computed independently: rebuilt from the file, eval mode, no gradients."""
    from volrob.checkpoint import load_checkpoint

    with torch.no_grad():
        return load_checkpoint(path).build_predictor().eval()(x)


@pytest.mark.parametrize("mode", MODES)
def test_teacher_loss_is_training_loss_at_temperature(mode: str) -> None:
    ctx = make_ctx(mode)
    ref = copy.deepcopy(ctx)
    x, y = make_batch(mode)
    out = defences.create("distill_teacher", temperature=5.0).batch_loss(ctx, x, y, seed=0)
    torch.testing.assert_close(out.loss, ref.loss(ref.predictor(x) / 5.0, y))
    assert_gradients_flow(out.loss, ctx)
    assert defences.create("distill_teacher", temperature=5).describe() == {
        "name": "distill_teacher", "params": {"temperature": 5.0}}


@pytest.mark.parametrize("mode", MODES)
def test_soft_labels_use_exactly_the_temperature(mode: str, tmp_path: Path) -> None:
    x, _ = make_batch(mode)
    z = teacher_logits(save_teacher(tmp_path / "t4.pt", mode, 4.0), x)
    save_teacher(tmp_path / "t1.pt", mode, 1.0)
    got = {}
    for t in (4.0, 1.0):
        student = defences.create("distillation", teacher=str(tmp_path / f"t{t:g}.pt"), temperature=t)
        student.setup(make_ctx(mode))
        got[t] = student.soft_labels(make_ctx(mode), x)
        want = torch.sigmoid(z / t) if mode == "regions" else torch.softmax(z / t, dim=1)
        torch.testing.assert_close(got[t], want)
    assert not torch.allclose(got[4.0], got[1.0], atol=1e-3)  # the temperature changes them


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("hard_weight", [0.0, 0.5])
def test_student_loss_is_soft_loss_at_temperature(mode: str, hard_weight: float, tmp_path: Path) -> None:
    path = save_teacher(tmp_path / "t.pt", mode, 3.0)
    ctx = make_ctx(mode)
    ref = copy.deepcopy(ctx)
    x, y = make_batch(mode)
    student = defences.create("distillation", teacher=path, temperature=3.0, hard_weight=hard_weight)
    student.setup(ctx)
    out = student.batch_loss(ctx, x, y, seed=0)
    zt, zs = teacher_logits(path, x).double(), ref.predictor(x).double()
    if mode == "regions":
        s, q = torch.sigmoid(zt / 3), torch.sigmoid(zs / 3)
        soft = -(s * torch.log(q) + (1 - s) * torch.log(1 - q)).mean()
    else:
        soft = -(torch.softmax(zt / 3, 1) * torch.log_softmax(zs / 3, 1)).sum(1).mean()
    want = soft + hard_weight * ref.loss(ref.predictor(x), y).double()
    torch.testing.assert_close(out.loss.double(), want, rtol=1e-5, atol=1e-6)
    assert ("hard" in out.parts) == (hard_weight > 0)
    assert_gradients_flow(out.loss, ctx)
    assert all(p.grad is None for p in student._teacher.parameters())


def test_teacher_refusals(tmp_path: Path) -> None:
    ctx = make_ctx("regions")
    cases = {
        "missing.pt": ("does not exist", None),
        "other_t.pt": ("temperature 2", save_teacher(tmp_path / "other_t.pt", temperature=2.0)),
        "plain.pt": ("'none'", save_teacher(tmp_path / "plain.pt", name="none")),
        "labels.pt": ("'labels' outputs", save_teacher(tmp_path / "labels.pt", mode="labels", temperature=4.0)),
    }
    for file, (why, _) in cases.items():
        student = defences.create("distillation", teacher=str(tmp_path / file), temperature=4.0)
        with pytest.raises(ConfigError, match=why) as err:
            student.setup(ctx)
        assert file in str(err.value)
    x, y = make_batch()
    with pytest.raises(ConfigError, match="setup"):
        defences.create("distillation", teacher="t.pt").batch_loss(ctx, x, y, seed=0)


@pytest.mark.parametrize(("name", "bad"), [
    ("distill_teacher", {"temperature": 0}), ("distill_teacher", {"temperature": "2"}),
    ("distillation", {"teacher": None}), ("distillation", {"teacher": ""}),
    ("distillation", {"teacher": "t.pt", "temperature": -1}),
    ("distillation", {"teacher": "t.pt", "hard_weight": -0.5}), ("distillation", {"teacher": "t.pt", "eps": 1})])
def test_bad_options(name: str, bad: dict) -> None:
    key = next(k for k in bad if not (k == "teacher" and bad[k] == "t.pt"))
    with pytest.raises(ConfigError, match=key):
        defences.create(name, **bad)
