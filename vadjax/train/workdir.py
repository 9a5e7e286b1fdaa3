"""A workdir's identity and ownership.

`experiment.json` binds a workdir to what makes its results what they are: the model and
its settings, the method and its settings, the dataset with its resolved location, a cheap
digest of the user's files (names and sizes), categories, crop, channels and image size.
Any other config is refused with the first field that differs, before anything is written.
`config.json` is the config itself, so that a trained run can be restored from the workdir
alone. A lock file (pid, host, start time) keeps a second run out while one is running; a
lock whose process is gone is stale and taken over with a warning.
"""

import contextlib
import datetime
import hashlib
import json
import os
import socket
import time

import jax
from absl import logging

from vadjax.methods import GROUP_DEFAULTS
from vadjax.registry import UserError

# data settings that change what a run sees (the rest are speed or location settings)
_DATA_KEYS_NOT_IDENTITY = ('workers', 'tfds_dir', 'manual_dir', 'folder_root')


def _file_digest(root: str) -> str:
  """sha256 (16 hex digits) of every file's relative path and size under `root`."""
  h = hashlib.sha256()
  for top, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(top, name)
      h.update(f'{os.path.relpath(path, root)}\0{os.path.getsize(path)}\n'.encode())
  return h.hexdigest()[:16]


def data_identity(config, digest: str = '') -> dict:
  """Where the data lives: a user's folder (with a digest of its files) or the prepared
  data of a real dataset (with the digest of the source files it was prepared from, for the
  video datasets); embedded data is defined by the config alone."""
  d = config.data
  if config.dataset in ('folder', 'folder_video'):
    root = os.path.abspath(os.path.expanduser(d.folder_root)) if d.folder_root else ''
    return {'location': root, 'files': _file_digest(root) if os.path.isdir(root) else ''}
  from vadjax.data import real        # noqa: PLC0415  (the real datasets' registry)
  if config.dataset in real.CATEGORIES:
    return {'location': os.path.abspath(real.tfds_dir(d)),
            **({'prepared_from': digest} if digest else {})}
  return {}


def fingerprint(config, image_shape, digest: str = '') -> dict:
  """What a workdir's results depend on (see the module docstring); `digest`: the prepared
  data's (Splits.digest)."""
  groups = {g: config[g].to_dict() for g in GROUP_DEFAULTS if g in config}
  data = {k: v for k, v in config.data.to_dict().items() if k not in _DATA_KEYS_NOT_IDENTITY}
  return json.loads(json.dumps({
      'model': config.model, 'model_kwargs': config.model_kwargs.to_dict(),
      'method': config.method, 'method_settings': groups, 'dataset': config.dataset,
      'data': data, 'data_identity': data_identity(config, digest),
      'categories': str(config.categories), 'image_size': config.image_size,
      'image_shape': list(image_shape), 'dtype': config.dtype}))


def first_difference(old: dict, new: dict, prefix: str = '') -> str | None:
  """'key: old → new' of the first field that differs, or None."""
  for key in [*new, *(k for k in old if k not in new)]:
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      diff = first_difference(a, b, f'{prefix}{key}.')
      if diff:
        return diff
    elif a != b:
      return f'{prefix}{key} was {a!r}, now {b!r}'
  return None


def check_writable(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f'.write_test{os.getpid()}')   # per process: hosts share it
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise UserError(f'cannot write to workdir {workdir!r} ({e.strerror}); pass a writable '
                    f'--workdir') from None


def bind(workdir: str, config, fp: dict, claim: bool = True) -> None:
  """Claims `workdir` for this experiment, or refuses one bound to another; with
  `claim=False` (evaluation) the workdir must already hold this experiment."""
  check_writable(workdir)
  path = os.path.join(workdir, 'experiment.json')
  if not claim and not os.path.exists(path):
    raise UserError(f'workdir {workdir!r} holds no trained experiment (no experiment.json); '
                    'run with --mode=train_and_eval first')
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    diff = first_difference(old, fp)
    if diff:
      raise UserError(f'workdir {workdir!r} holds another experiment ({diff}); use another '
                      f'--workdir (nothing was changed)')
  if jax.process_index() == 0:
    config_path = os.path.join(workdir, 'config.json')
    if not os.path.exists(config_path):    # first, so an experiment.json always has one
      _write_json(config_path, config.to_dict())
    if not os.path.exists(path):
      _write_json(path, fp)


def _write_json(path: str, value) -> None:
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=1, default=list)
  os.replace(tmp, path)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


@contextlib.contextmanager
def lock(workdir: str):
  """Holds `workdir/.lock` for the duration of a run (process 0 of a multi-host run)."""
  if jax.process_index() != 0:
    yield
    return
  path = os.path.join(workdir, '.lock')
  me = {'pid': os.getpid(), 'host': socket.gethostname(),
        'started': datetime.datetime.now().isoformat(timespec='seconds')}
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      break
    except FileExistsError:
      _take_if_stale(path, workdir)
  else:
    raise UserError(f'workdir {workdir!r} is locked by another run; wait for it or use '
                    'another --workdir')
  with os.fdopen(fd, 'w') as f:
    json.dump(me, f)
  try:
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


def _take_if_stale(path: str, workdir: str) -> None:
  try:
    age = time.time() - os.path.getmtime(path)
    with open(path) as f:
      holder = json.load(f)
  except FileNotFoundError:
    return                   # released meanwhile: try again
  except (OSError, ValueError):
    holder = {}
  here = holder.get('host') == socket.gethostname()
  if not holder and age < 5:
    holder = {'pid': '?', 'host': 'this host', 'started': 'just now'}   # being written
  if holder and (not here or _alive(int(holder.get('pid', 0)))):
    raise UserError(f'workdir {workdir!r} is in use by the run of process {holder["pid"]} on '
                    f'{holder["host"]} since {holder.get("started")}; wait for it or use '
                    f'another --workdir (if that run is gone, remove {path})')
  logging.warning('workdir %s: taking over the stale lock of %s', workdir, holder or 'an '
                  'unreadable lock file')
  with contextlib.suppress(FileNotFoundError):
    os.remove(path)
