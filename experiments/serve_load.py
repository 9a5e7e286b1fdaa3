"""A bounded load test of the scoring server on loopback (vadjax/serving/loadtest.py).

  python -m experiments.serve_load --workdir=RUN [--clients=8 --requests=50] [--out=r.json]

Starts the server for the run in this process on a free loopback port, sends
clients × requests valid requests (test-split frames of the run, as PNG) and every
malformed request of `loadtest.malformed_requests`, and prints the numbers.
"""

import json
import threading

from absl import app, flags

from experiments.cli import define_run_flags, run_or_fail, start
from vadjax.data import DATASETS
from vadjax.serving import loadtest
from vadjax.serving.server import make_server

_RESTORE = define_run_flags()
_CLIENTS = flags.DEFINE_integer('clients', 8, 'Concurrent clients.')
_REQUESTS = flags.DEFINE_integer('requests', 50, 'Valid requests per client.')
_OUT = flags.DEFINE_string('out', '', 'Write the numbers to this JSON file too.')


def _load_test() -> dict:
  run = _RESTORE()
  server = make_server(run, '127.0.0.1', 0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    p = server.predictor
    headers, body = loadtest.valid_request(_test_frames(run, p.clip_length), p.kind == 'clip')
    result = loadtest.run('127.0.0.1', server.server_address[1], headers, body,
                          _CLIENTS.value, _REQUESTS.value, p.clip_length)
  finally:
    server.shutdown()
    server.server_close()
  return {'run': run.name, **result}


def _test_frames(run, clip_length: int):
  """The first test frame (a clip's frames for clip models) of the run's dataset, whole
  (before any patch protocol)."""
  splits = DATASETS.get(run.config.dataset)(run.category, run.config.image_size,
                                             run.config.data)
  if hasattr(splits.test, 'videos'):
    return splits.test.videos[0].frames[:clip_length]
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
