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
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default runs/<config name>).')
_MODE = flags.DEFINE_enum('mode', 'train_and_eval', ['train', 'eval', 'train_and_eval'],
                          'What to do.')


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _last_line(e: Exception) -> str:
  lines = [x.strip() for x in str(e).splitlines() if x.strip()]
  return lines[-1] if lines else type(e).__name__


def _define_config_flag() -> None:
  # config_flags reads --config.* overrides from sys.argv when the flag is defined, so an
  # unknown key fails here, before flag parsing.
  try:
    config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG,
                                    'Experiment config file[:variant].', lock_config=True)
  except (AttributeError, KeyError) as e:
    overrides = [a for a in sys.argv if a.startswith('--config.')]
    key = _last_line(e).strip(chr(34) + chr(39))
    _fail(f'unknown config key {key!r} in {" ".join(overrides)}; the keys are those of the '
          f'config file (see experiments/configs/base.py)')


class _QuietLibraries(logging_lib.Filter):
  """Drops the INFO chatter of Orbax (one line per checkpoint thread event)."""

  def filter(self, record):
    return record.levelno > logging_lib.INFO or '/orbax/' not in record.pathname


def _parse_flags(argv):
  """absl flag parsing, with config-file and override errors as one line, no traceback."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # noqa: BLE001  (flags and config files raise many kinds)
    _fail(_last_line(e))


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    _fail(f'unexpected arguments: {argv[1:]}')
  try:
    config = flags.FLAGS.config
    config.model  # noqa: B018  (the file is loaded lazily; fail here, not mid-run)
  except Exception as e:  # noqa: BLE001  (a config file that cannot be loaded)
    _fail(f'cannot load --config: {_last_line(e)}')
  config_path = flags.FLAGS['config'].config_filename.split(':')[0]
  workdir = _WORKDIR.value or os.path.join(
      'runs', os.path.splitext(os.path.basename(config_path))[0])
  logging.info('JAX %s, %d %s device(s), process %d/%d; workdir %s', jax.__version__,
               jax.device_count(), jax.default_backend(), jax.process_index() + 1,
               jax.process_count(), workdir)
  try:
    train_and_evaluate(config, workdir, _MODE.value)
  except UserError as e:
    _fail(str(e))


if __name__ == '__main__':
  _define_config_flag()
  app.run(main, flags_parser=_parse_flags)
