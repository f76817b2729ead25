"""Training: the training loop and the model store of trained checkpoints."""
