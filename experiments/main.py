"""Launches an experiment: train and/or evaluate the config's model in a workdir.

  python -m experiments.main --config=experiments/configs/<name>.py[:variant] \
      --workdir=DIR [--mode=train|eval|train_and_eval] [--config.key=value ...]
  python -m experiments.main --config=... --config.reconstruction.score_window=0 \
      --rescore_from=TRAINED_DIR --workdir=NEW_DIR     # re-score (vadjax.train.rescore)

With no flags it runs experiments/configs/quickstart.py in runs/quickstart. A workdir that
already holds a run resumes it from its last checkpoint.
"""

import ast
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.cli import fail, quiet_libraries
from vadjax.registry import UserError
from vadjax.train import train_and_evaluate
from vadjax.train.loop import Interrupted
from vadjax.train.rescore import rescore

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), 'configs', 'quickstart.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default runs/<config name>).')
_MODE = flags.DEFINE_enum('mode', 'train_and_eval', ['train', 'eval', 'train_and_eval'],
                          'What to do.')
_RESCORE = flags.DEFINE_string('rescore_from', None, 'Instead of training: score the runs of '
                               'this trained workdir with the config (the one it was trained '
                               'with, score settings changed) into --workdir.')


def _message(e: BaseException) -> str:
  """An exception's own text: a KeyError's str() is the repr of its message, and
  ml_collections re-raises it as an AttributeError of that repr."""
  text = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
  while len(text) > 1 and text[0] == text[-1] and text[0] in chr(34) + chr(39):
    try:
      text = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      break
  return text


def _last_line(e: BaseException) -> str:
  """The exception's last line, without the 'ValueError: ' a wrapped one carries."""
  lines = [x.strip() for x in _message(e).splitlines() if x.strip()]
  line = lines[-1] if lines else type(e).__name__
  head, sep, rest = line.partition(': ')
  return rest if sep and head.isidentifier() and head.endswith('Error') else line


def _unknown_key(e: BaseException) -> str:
  """ml_collections' unknown-key error ("'key'\nDid you mean ...?") as one line."""
  lines = [x.strip() for x in _message(e).splitlines() if x.strip()]
  key = lines[0].strip(chr(34) + chr(39)) if lines else '?'
  hint = f' ({lines[-1][0].lower()}{lines[-1][1:]})' if len(lines) > 1 else ''
  return (f'unknown config key {key!r}{hint}; the keys are those of the config file (see '
          f'experiments/configs/base.py)')


def _define_config_flag() -> None:
  # config_flags reads --config.* overrides from sys.argv when the flag is defined, so an
  # unknown key fails here, before flag parsing.
  try:
    config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG,
                                    'Experiment config file[:variant].', lock_config=True)
  except (AttributeError, KeyError) as e:
    fail(_unknown_key(e))


def _parse_flags(argv):
  """absl flag parsing, with config-file and override errors as one line, no traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:   # an unknown --config.key (parsed lazily)
    fail(_unknown_key(e))
  except Exception as e:  # noqa: BLE001  (flags and config files raise many kinds)
    fail(_last_line(e))


def main(argv):
  quiet_libraries()
  if len(argv) > 1:
    fail(f'unexpected arguments: {argv[1:]}')
  try:
    config = flags.FLAGS.config
    config.model  # noqa: B018  (the file is loaded lazily; fail here, not mid-run)
  except Exception as e:  # noqa: BLE001  (a config file that cannot be loaded)
    fail(f'cannot load --config: {_last_line(e)}')
  config_path = flags.FLAGS['config'].config_filename.split(':')[0]
  workdir = _WORKDIR.value or os.path.join(
      'runs', os.path.splitext(os.path.basename(config_path))[0])
  logging.info('JAX %s, %d %s device(s), process %d/%d; workdir %s', jax.__version__,
               jax.device_count(), jax.default_backend(), jax.process_index() + 1,
               jax.process_count(), workdir)
  try:
    if _RESCORE.value:
      rescore(_RESCORE.value, config, workdir)
    else:
      train_and_evaluate(config, workdir, _MODE.value)
  except Interrupted as e:
    fail(str(e), e.exit_code)
  except UserError as e:
    fail(str(e))
  except KeyboardInterrupt:
    fail('interrupted before training started; nothing to resume from yet', 130)


if __name__ == '__main__':
  _define_config_flag()
  app.run(main, flags_parser=_parse_flags)
