"""Defences: robust training objectives selected by the ``defence:`` section of a training configuration."""

from volrob.defences import distill_teacher as _distill_teacher  # noqa: F401  (registers defences)
from volrob.defences import distillation as _distillation  # noqa: F401  (registers defences)
from volrob.defences import fgsm_rs as _fgsm_rs  # noqa: F401  (registers defences)
from volrob.defences import noise as _noise  # noqa: F401  (registers defences)
from volrob.defences import pgd_at as _pgd_at  # noqa: F401  (registers defences)
from volrob.defences import standard as _standard  # noqa: F401  (registers the built-in defences)
from volrob.defences import trades as _trades  # noqa: F401  (registers defences)
from volrob.defences import vaft as _vaft  # noqa: F401  (registers defences)
from volrob.defences.registry import available, create, register_defence

__all__ = ["available", "create", "register_defence"]
