"""Adversarial attacks: ``create(name, **cfg)``, ``available()``, ``register_attack``.

Importing this package registers every built-in attack.
"""

from volrob.attacks.base import Attack, AttackResult
from volrob.attacks.registry import ATTACKS, available, create, register_attack
from volrob.attacks.threat import ThreatModel

__all__ = ["ATTACKS", "Attack", "AttackResult", "ThreatModel", "available", "create", "register_attack"]
