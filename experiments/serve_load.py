"""A bounded load test of the scoring server on loopback (vadjax/serving/loadtest.py).

  python -m experiments.serve_load --workdir=RUN [--clients=8 --requests=50] [--out=r.json]

Starts the server for the run in this process on a free loopback port, sends
clients × requests valid requests (test-split frames of the run, as PNG) and every hostile
or malformed request of `loadtest.malformed_requests`, and prints the numbers, with the
model's own compute time at batch 1 (the scoring call alone, no HTTP) beside the lone
request's latency.
"""

import json
import time

import numpy as np
from absl import app, flags

from experiments.cli import define_run_flags, run_or_fail, start
from vadjax.data import DATASETS
from vadjax.serving import loadtest
from vadjax.serving.listen import running
from vadjax.serving.server import make_app

_RESTORE = define_run_flags()
_CLIENTS = flags.DEFINE_integer('clients', 8, 'Concurrent clients.')
_REQUESTS = flags.DEFINE_integer('requests', 50, 'Valid requests per client.')
_OUT = flags.DEFINE_string('out', '', 'Write the numbers to this JSON file too.')


def compute_ms(predictor, frames, repeats: int = 50) -> float:
  """The median time of the scoring call alone on one request's records."""
  x, offsets = predictor.take(predictor.records(frames, predictor.kind == 'clip'), 0, 1)
  predictor.score_records(x, offsets)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    predictor.score_records(x, offsets)
    times.append(time.perf_counter() - t)
  return float(np.median(times) * 1e3)


def _load_test() -> dict:
  run = _RESTORE()
  application = make_app([run])
  state = application.state.vadjax
  state.ready.wait()
  served = next(iter(state.served.values()))
  p = served.predictor
  frames = _test_frames(run, p.clip_length)
  headers, body = loadtest.valid_request(frames, p.kind == 'clip')
  with running(application) as port:
    lone = loadtest.run('127.0.0.1', port, headers, body, 1, _REQUESTS.value, p.clip_length)
    result = loadtest.run('127.0.0.1', port, headers, body, _CLIENTS.value, _REQUESTS.value,
                          p.clip_length)
  return {'run': run.name, 'batch1_compute_ms': compute_ms(p, frames),
          'lone_p50_ms': lone['p50_ms'], 'buckets': p.buckets, **result}


def _test_frames(run, clip_length: int):
  """The first test frame (a clip's frames for clip models) of the run's dataset, whole
  (before any patch protocol)."""
  splits = DATASETS.get(run.config.dataset)(run.category, run.config.image_size,
                                             run.config.data)
  if hasattr(splits.test, 'videos'):
    return np.asarray(splits.test.videos[0].frames[:clip_length])
  return splits.test[0]['image'][None]


def main(argv):
  start(argv)
  result = run_or_fail(_load_test)
  print(json.dumps(result, indent=1))
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
