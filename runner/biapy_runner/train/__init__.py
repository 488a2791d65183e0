"""Training: targets, losses, metrics and augmentation (pure functions), the training loop."""
