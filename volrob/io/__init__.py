"""Small I/O helpers shared by every writer in volrob."""

from volrob.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from volrob.io.paths import shown_path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "shown_path"]
