"""Training: the trainer, one optimizer step, runs and stages, resume, signals, DDP, TensorBoard."""
