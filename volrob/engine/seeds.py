"""Seeds of units of work: functions of the run seed and the case id only, never of order, rank or process."""

from __future__ import annotations

import zlib

import numpy as np


def case_seed(seed: int, case_id: str) -> int:
    """The attack seed of one case: depends on the run seed and the case id only."""
    return int(np.random.SeedSequence([seed, zlib.crc32(case_id.encode())]).generate_state(1)[0] % (2**31))
