"""What every entry point shares: one-line errors and quiet library logs."""

import logging as logging_lib
import sys

from absl import logging

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
