"""Training: TrainState, jitted sharded steps, the loop, Orbax checkpoints and logging."""

from vadjax.train.loop import train_and_evaluate

__all__ = ['train_and_evaluate']
