"""A bounded load test of the scoring server on loopback (vadjax/serving/loadtest.py).

  python -m experiments.serve_load --workdir=RUN [--clients=8 --requests=50] [--out=r.json]

Starts the server for the run in this process on a free loopback port, sends
clients × requests valid requests (test-split frames of the run, as PNG) and every hostile
or malformed request of `loadtest.malformed_requests`, and prints the numbers; first a
lone client's latency beside the model's own compute for the same request, measured in
alternation (`loadtest.paired_latency`), and a lone request of a whole eval batch.
"""

import json

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
    lone = loadtest.paired_latency(p, frames, port, headers, body)
    lone['full_batch_p50_ms'] = loadtest.full_batch_ms(p, frames, port)
    result = loadtest.run('127.0.0.1', port, headers, body, _CLIENTS.value, _REQUESTS.value,
                          p.clip_length)
  return {'run': run.name, **lone, 'buckets': p.buckets, **result}


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
