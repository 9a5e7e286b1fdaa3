"""What every entry point shares: one-line errors and quiet library logs."""

import logging as logging_lib
import sys

from absl import flags, logging

from vadjax.registry import UserError


def fail(message: str, code: int = 2) -> None:
  print(f'error: {" ".join(str(message).split())}', file=sys.stderr)
  sys.exit(code)


class _QuietLibraries(logging_lib.Filter):
  """Drops the INFO chatter of Orbax (one line per checkpoint thread event)."""

  def filter(self, record):
    return record.levelno > logging_lib.INFO or '/orbax/' not in record.pathname


def quiet_libraries() -> None:
  logging.get_absl_handler().addFilter(_QuietLibraries())


def run_or_fail(fn, *args, **kwargs):
  """fn(...), with a user error (bad input, missing file) as one line and exit code 2."""
  try:
    return fn(*args, **kwargs)
  except UserError as e:
    fail(str(e))
  except KeyboardInterrupt:
    fail('interrupted', 130)


def start(argv) -> None:
  """What every entry point does first: no stray arguments, quiet library logs."""
  if len(argv) > 1:
    fail(f'unexpected arguments: {argv[1:]}')
  quiet_libraries()


def define_run_flags():
  """--workdir, --category and --seed, the trained run an entry point uses; returns the
  function that restores it."""
  workdir = flags.DEFINE_string('workdir', None, 'A trained experiment (python -m '
                                'experiments.main --workdir=...).', required=True)
  category = flags.DEFINE_string('category', None, "The run's category (default: its first).")
  seed = flags.DEFINE_integer('seed', None, "The run's seed (default: its first).")

  def restore_run():
    from vadjax.train import restore
    return restore(workdir.value, category.value, seed.value)
  return restore_run
