"""Whole studies from one YAML file: data, training, attacks, transfer, defences and comparisons, cached by stage."""
