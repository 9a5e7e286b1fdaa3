"""Training and trained runs: experiments and `restore` (experiment.py), the training loop
(loop.py), scoring, calibration and figures (evaluate.py), workdir identity (workdir.py),
jitted steps, Orbax checkpoints and logging."""

from vadjax.train.experiment import TrainedRun, load_splits, restore, train_and_evaluate

__all__ = ['TrainedRun', 'load_splits', 'restore', 'train_and_evaluate']
