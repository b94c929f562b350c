"""Adversarial attacks: ``create(name, **cfg)``, ``available()``, ``register_attack``.

Importing this package registers every built-in attack.
"""

from volrob.attacks import asma as _asma  # noqa: F401  (registers attacks)
from volrob.attacks import bim as _bim  # noqa: F401  (registers attacks)
from volrob.attacks import cospgd as _cospgd  # noqa: F401  (registers attacks)
from volrob.attacks import diversity as _diversity  # noqa: F401  (registers attacks)
from volrob.attacks import fgsm as _fgsm  # noqa: F401  (registers attacks)
from volrob.attacks import mifgsm as _mifgsm  # noqa: F401  (registers attacks)
from volrob.attacks import noise as _noise  # noqa: F401  (registers attacks)
from volrob.attacks import pgd as _pgd  # noqa: F401  (registers attacks)
from volrob.attacks import segpgd as _segpgd  # noqa: F401  (registers attacks)
from volrob.attacks import square as _square  # noqa: F401  (registers attacks)
from volrob.attacks import targeted as _targeted  # noqa: F401  (registers attacks)
from volrob.attacks.base import Attack, AttackResult
from volrob.attacks.frequency import vafa as _vafa  # noqa: F401  (registers attacks)
from volrob.attacks.registry import ATTACKS, available, create, register_attack
from volrob.attacks.threat import ThreatModel
from volrob.attacks.universal import apply as _universal  # noqa: F401  (registers attacks)

__all__ = ["ATTACKS", "Attack", "AttackResult", "ThreatModel", "available", "create", "register_attack"]
