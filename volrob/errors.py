"""The one exception users see: a single actionable line, exit code 2 at the command line."""

from __future__ import annotations

from pathlib import Path


class VolrobError(Exception):
    """Bad input or configuration. ``str(err)`` is one line naming the file or parameter and the problem."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        text = " ".join(str(message).split())
        super().__init__(f"{self.path}: {text}" if self.path else text)


class ConfigError(VolrobError):
    """A configuration key or value is wrong."""


class DataError(VolrobError):
    """An image, label or manifest is missing, unreadable or inconsistent."""


class CheckpointError(VolrobError):
    """A checkpoint is corrupt, unsafe or does not match what was asked for."""
