"""The runs page's data: every experiment workdir under a root folder (a folder holding a
`config.json`), with its config, metrics (report.json's means), and the figures and
explanations it wrote, for `/browse` (vadjax/serving/server.py, `experiments/browse.py`).

Files are served only from inside a workdir under the root, only figures (.png) and JSON,
by a path that must resolve there: no `..`, no links out.
"""

import json
import os

from fastapi import FastAPI
from fastapi.responses import FileResponse

from vadjax.serving.requests import RequestError

SKIP = ('checkpoints', 'cache', 'tensorboard')
FILES = ('.png', '.json')
MAX_DEPTH, MAX_WORKDIRS = 4, 500


def unique_ids(runs) -> list[str]:
  """A short id per served run: its workdir's name, category and seed."""
  ids = []
  for run in runs:
    workdir = os.path.dirname(os.path.dirname(run.run_dir))
    base = f'{os.path.basename(workdir.rstrip(os.sep))}/{run.category}/seed{run.seed}'
    ids.append(base if base not in ids else f'{base}#{len(ids)}')
  return ids


def workdirs(root: str) -> list[str]:
  """Workdirs under `root`, relative to it, in name order (depth and count bounded)."""
  found = []
  for here, dirs, files in os.walk(root):
    rel = os.path.relpath(here, root)
    depth = 0 if rel == '.' else rel.count(os.sep) + 1
    if 'config.json' in files:
      found.append(rel)
      dirs[:] = []                    # a workdir's folders are its own
    elif depth >= MAX_DEPTH:
      dirs[:] = []
    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
    if len(found) >= MAX_WORKDIRS:
      break
  return sorted(found)


def _json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def summary(root: str, rel: str) -> dict:
  """One workdir: config essentials, mean metrics, date and its figures."""
  folder = os.path.join(root, rel)
  config = _json(os.path.join(folder, 'config.json')) or {}
  report = _json(os.path.join(folder, 'report.json')) or {}
  metrics = {k: v.get('mean') for k, v in (report.get('mean') or {}).items()
             if isinstance(v, dict) and isinstance(v.get('mean'), (int, float))}
  figures = []
  for here, dirs, files in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if d not in SKIP and not d.startswith('.'))
    figures += [os.path.relpath(os.path.join(here, f), folder) for f in sorted(files)
                if f.endswith('.png')]
  return {'id': rel, 'model': config.get('model'), 'method': config.get('method'),
          'dataset': config.get('dataset'), 'categories': config.get('categories'),
          'image_size': config.get('image_size'), 'date': report.get('date'),
          'finished': bool(report), 'metrics': metrics, 'figures': figures[:64],
          'config': config}


def _inside(parent: str, path: str) -> bool:
  return os.path.commonpath([parent, path]) == parent


def safe_path(root: str, rel: str, path: str) -> str:
  """`root/rel/path` if it is a workdir's figure or JSON file, else a 404."""
  base = os.path.realpath(root)
  folder = os.path.realpath(os.path.join(base, rel))
  if not _inside(base, folder) or not os.path.isfile(os.path.join(folder, 'config.json')):
    raise RequestError(404, f'no workdir {rel!r} under the runs root')
  full = os.path.realpath(os.path.join(folder, path))
  if (not _inside(folder, full) or not full.endswith(FILES)
      or not os.path.isfile(full)):
    raise RequestError(404, f'no figure or JSON file {path!r} in {rel!r}')
  return full


def routes(app: FastAPI, root: str, static: str) -> None:
  @app.get('/browse', include_in_schema=False)
  async def page():
    return FileResponse(os.path.join(static, 'runs.html'))

  @app.get('/api/workdirs')
  def listing():
    return {'root': root, 'workdirs': [summary(root, rel) for rel in workdirs(root)]}

  @app.get('/api/file')
  def file(workdir: str, path: str):
    return FileResponse(safe_path(root, workdir, path))
