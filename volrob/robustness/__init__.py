"""Robustness runs: attack a manifest split with a checkpoint and tabulate clean vs adversarial scores."""
