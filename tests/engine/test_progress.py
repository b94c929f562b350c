"""Progress: per-unit lines with an ETA weighted by cost, per-step lines during long units, nothing when disabled,
and bars on a terminal."""

from __future__ import annotations

import io

import pytest

from volrob.engine.progress import Progress, format_seconds


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (42, "42 s"), (89, "89 s"), (90, "2 min"),
                                               (3569, "59 min"), (3599, "1 h 00 min"), (3600, "1 h 00 min"),
                                               (5700, "1 h 35 min")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_lines_in_a_log(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("volrob.engine.progress.time.perf_counter", lambda: now[0])
    stream = io.StringIO()
    p = Progress(True, stream=stream, log_every=5.0)
    p.start(2, total_cost=4.0, estimate_seconds=80.0)
    assert p.eta() == pytest.approx(80.0)  # before anything finished: the plan's estimate
    with p.unit("cell/a", 1.0) as step:
        now[0] = 3.0
        step(1, 4)  # 3 s into the unit: below log_every, no line
        now[0] = 10.0
        step(2, 4)  # 10 s: one line, with the ETA of what is left
        now[0] = 12.0
    lines = stream.getvalue().splitlines()
    assert lines[0] == "  cell/a: step 2/4 (10 s); about 70 s left"  # 3.5 of 4 cost units left at 20 s per unit
    assert lines[1] == "[1/2] cell/a: 12.0 s; about 36 s left"  # 3 left at 12 s per unit
    with p.unit("cell/b", 3.0) as step:
        now[0] = 40.0
        step(4, 4)  # the last step is not reported separately
    assert stream.getvalue().splitlines()[2:] == ["[2/2] cell/b: 28.0 s; about 0 s left"]


def test_eta_is_cost_weighted(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("volrob.engine.progress.time.perf_counter", lambda: now[0])
    p = Progress(False)
    p.start(3, total_cost=10.0, estimate_seconds=None)
    assert p.eta() is None
    with p.unit("a", 2.0):
        now[0] = 20.0
    assert p.eta() == pytest.approx(8.0 * 10.0)  # 10 s per unit of cost, 8 left
    assert p.eta(partial=4.0) == pytest.approx(4.0 * 20.0 / 6.0)


def test_disabled_reports_nothing_and_a_terminal_gets_bars() -> None:
    quiet = io.StringIO()
    p = Progress(False, stream=quiet)
    p.start(1, 1.0, 1.0)
    with p.unit("a", 1.0) as step:
        step(1, 2)
        step(2, 2)
    p.write("hello")
    assert quiet.getvalue() == ""
    tty = _Tty()
    bars = Progress(True, stream=tty, prefix="[rank 1] ")
    bars.start(1, 1.0, 1.0)
    with bars.unit("cell/a", 1.0) as step:
        step(1, 2)
        step(2, 2)
    bars.close()
    text = tty.getvalue()
    assert "[rank 1] units" in text and "[rank 1] cell/a" in text and "step" in text
