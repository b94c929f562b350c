"""Training: YAML configuration, the training loop, learning-rate schedule and data sampling."""
