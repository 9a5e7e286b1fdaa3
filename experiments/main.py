"""Launches an experiment: train and/or evaluate the config's model in a workdir.

  python -m experiments.main --config=experiments/configs/<name>.py[:variant] \
      --workdir=DIR [--mode=train|eval|train_and_eval] [--config.key=value ...]

With no flags it runs experiments/configs/quickstart.py in runs/quickstart. A workdir that
already holds a run resumes it from its last checkpoint.
"""

import logging as logging_lib
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from vadjax.registry import UserError
from vadjax.train import train_and_evaluate

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), 'configs', 'quickstart.py')
config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG, 'Experiment config file[:variant].',
                                lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default runs/<config name>).')
_MODE = flags.DEFINE_enum('mode', 'train_and_eval', ['train', 'eval', 'train_and_eval'],
                          'What to do.')


class _QuietLibraries(logging_lib.Filter):
  """Drops the INFO chatter of Orbax (one line per checkpoint thread event)."""

  def filter(self, record):
    return record.levelno > logging_lib.INFO or '/orbax/' not in record.pathname


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config_path = flags.FLAGS['config'].config_filename.split(':')[0]
  workdir = _WORKDIR.value or os.path.join(
      'runs', os.path.splitext(os.path.basename(config_path))[0])
  logging.info('JAX %s, %d %s device(s), process %d/%d; workdir %s', jax.__version__,
               jax.device_count(), jax.default_backend(), jax.process_index() + 1,
               jax.process_count(), workdir)
  try:
    train_and_evaluate(flags.FLAGS.config, workdir, _MODE.value)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
