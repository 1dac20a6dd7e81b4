"""Training: dataset layout, augmentation, the training loop, checkpoints and model export."""
