"""The experiment engine: every command's units of work (cell × case) run through one kernel (docs/engine.md).

``RunConfig`` / ``load_run_config`` describe a run; ``run_experiment`` runs it (resuming, sharded under torchrun)
and returns the merged tables.
"""

from volrob.engine.config import RunConfig, load_run_config, parse_run_config
from volrob.engine.kernel import RunResult, run_experiment

__all__ = ["RunConfig", "RunResult", "load_run_config", "parse_run_config", "run_experiment"]
