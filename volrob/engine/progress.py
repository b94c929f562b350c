"""Progress of a run: per unit and per attack step, with an ETA weighted by each unit's estimated cost.

On a terminal: a bar over this process's units (with the ETA) and, below it, a bar over the current attack's
steps. Elsewhere (a log file, CI): one line per finished unit and, during a long unit, one line every
``log_every`` seconds with its step count. The ETA is the estimated cost still to run times the seconds per unit
of cost observed so far (before the first unit finishes: the plan's estimate from timed passes).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import IO

from tqdm import tqdm


def format_seconds(seconds: float) -> str:
    """``42 s``, ``7 min``, ``1 h 35 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """Reports one process's share of a run. ``enabled=False`` reports nothing."""

    def __init__(self, enabled: bool = True, *, prefix: str = "", stream: IO[str] | None = None,
                 log_every: float = 30.0) -> None:
        self.enabled = enabled
        self.prefix = prefix
        self.stream = stream or sys.stderr
        self.log_every = log_every
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: tqdm | None = None
        self._total_cost = self._done_cost = 0.0
        self._seconds_per_cost: float | None = None
        self._n = self._i = 0
        self._t0 = time.perf_counter()

    def start(self, n_units: int, total_cost: float, estimate_seconds: float | None) -> None:
        """Begin this process's ``n_units`` of summed estimated ``total_cost`` (``estimate_seconds`` predicted)."""
        self._n, self._total_cost = n_units, max(total_cost, 1e-9)
        self._seconds_per_cost = estimate_seconds / self._total_cost if estimate_seconds else None
        self._t0 = time.perf_counter()
        if self.enabled and self.tty and n_units:
            self._bar = tqdm(total=n_units, desc=f"{self.prefix}units", unit="unit", file=self.stream,
                             dynamic_ncols=True, bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed} {postfix}")

    def eta(self, partial: float = 0.0) -> float | None:
        """Seconds still to run, or None before anything can be said."""
        done = self._done_cost + partial
        rate = (time.perf_counter() - self._t0) / done if done > 0 else self._seconds_per_cost
        return None if rate is None else max(self._total_cost - done, 0.0) * rate

    def _eta_text(self, partial: float = 0.0) -> str:
        eta = self.eta(partial)
        return "" if eta is None else f"about {format_seconds(eta)} left"

    def write(self, text: str) -> None:
        """A message that does not break the bars."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(f"{self.prefix}{text}", file=self.stream)
        else:
            print(f"{self.prefix}{text}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def unit(self, label: str, cost: float) -> Iterator[UnitProgress]:
        """Report one unit of estimated ``cost``; the yielded object takes the attack's step callbacks."""
        self._i += 1
        tracker = UnitProgress(self, label, cost)
        try:
            yield tracker
        finally:
            tracker.close()
        self._done_cost += cost
        seconds = time.perf_counter() - tracker.t0
        if self._bar is not None:
            self._bar.set_postfix_str(self._eta_text(), refresh=False)
            self._bar.update(1)
        elif self.enabled:
            self.write(f"[{self._i}/{self._n}] {label}: {seconds:.1f} s; {self._eta_text() or 'done'}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class UnitProgress:
    """Step progress of one unit: ``tracker(done, total)`` is an attack's ``progress`` callback."""

    def __init__(self, owner: Progress, label: str, cost: float) -> None:
        self.owner, self.label, self.cost = owner, label, cost
        self.t0 = self._last = time.perf_counter()
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        owner = self.owner
        if not owner.enabled:
            return
        if owner.tty:
            if self._bar is None:
                self._bar = tqdm(total=total, desc=f"{owner.prefix}{self.label}", unit="step", leave=False,
                                 file=owner.stream, dynamic_ncols=True)
            self._bar.update(done - self._bar.n)
            if owner._bar is not None:
                owner._bar.set_postfix_str(owner._eta_text(self.cost * done / max(total, 1)))
            return
        now = time.perf_counter()
        if now - self._last >= owner.log_every and done < total:
            self._last = now
            owner.write(f"  {self.label}: step {done}/{total} ({now - self.t0:.0f} s); "
                        f"{owner._eta_text(self.cost * done / max(total, 1))}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
