"""Serves trained runs' scores over HTTP, with a page to try them (vadjax/serving/server.py).

  python -m experiments.serve --workdir=RUN [--workdir=RUN2 ...] [--root=RUNS_FOLDER]
      [--host=127.0.0.1 --port=8080] [--threshold=gmean] [--drain_s=5]
      [--max_bytes=16777216 --max_pixels=16777216 --max_request_pixels=67108864
       --max_frames=1024 --timeout_s=30 --max_connections=256]

  open http://127.0.0.1:8080/            drop an image, frames or a video
  curl -s localhost:8080/health
  curl -s -H 'Content-Type: image/png' --data-binary @frame.png localhost:8080/score
  curl -s -H 'Content-Type: video/mp4' --data-binary @clip.mp4 localhost:8080/score

--root adds the runs page (/browse) over every workdir under that folder. SIGTERM or
Ctrl-C drains: /ready and new requests answer 503 for --drain_s seconds while requests in
flight finish, then the server closes.
"""

import os

from absl import app, flags, logging

from experiments.cli import fail, run_or_fail, start
from vadjax.serving.requests import Limits
from vadjax.serving.listen import bind, server_for
from vadjax.serving.server import make_app

_WORKDIR = flags.DEFINE_multi_string('workdir', [], 'A trained experiment to serve (repeat '
                                     'the flag for several).')
_CATEGORY = flags.DEFINE_string('category', None, "The runs' category (default: each one's "
                                'first).')
_SEED = flags.DEFINE_integer('seed', None, "The runs' seed (default: each one's first).")
_ROOT = flags.DEFINE_string('root', '', 'A folder of workdirs to list on the runs page '
                            '(/browse).')
_HOST = flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every '
                            'interface).')
_PORT = flags.DEFINE_integer('port', 8080, 'Port to listen on (0: any free one).')
_THRESHOLD = flags.DEFINE_string('threshold', 'gmean', 'Default threshold (requests may '
                                 'choose another).')
_DRAIN = flags.DEFINE_float('drain_s', 5.0, 'Seconds of draining after SIGTERM (503 to new '
                            'requests) before the server closes.')
_LIMITS = {f: flags.DEFINE_float(f, getattr(Limits, f), f'Request limit: {f}.')
           for f in ('max_bytes', 'max_pixels', 'max_request_pixels', 'max_frames',
                     'timeout_s', 'max_connections')}


def limits() -> Limits:
  return Limits(**{f: (flag.value if f == 'timeout_s' else int(flag.value))
                   for f, flag in _LIMITS.items()})


def build_app():
  from vadjax.train import restore
  if not _WORKDIR.value and not _ROOT.value:
    fail('give --workdir (a run to serve) and/or --root (a folder of runs to browse)')
  if _ROOT.value and not os.path.isdir(_ROOT.value):
    fail(f'--root {_ROOT.value!r} is not a folder')
  runs = [restore(w, _CATEGORY.value, _SEED.value) for w in _WORKDIR.value]
  return make_app(runs, limits(), _THRESHOLD.value, _ROOT.value, _DRAIN.value)


def serve(build) -> None:
  """Binds first (a taken port is a one-line error before anything loads), then serves
  the app `build()` makes until a signal."""
  try:
    sock = bind(_HOST.value, _PORT.value)
  except OSError as e:
    fail(f'cannot listen on {_HOST.value}:{_PORT.value}: {e.strerror or e}')
  application = run_or_fail(build)
  host, port = sock.getsockname()[:2]
  logging.info('serving on http://%s:%d (/, /browse, /health, /score, /docs)', host, port)
  print(f'serving on http://{host}:{port}', flush=True)
  server_for(application, 'info').run(sockets=[sock])


def main(argv):
  start(argv)
  serve(build_app)


if __name__ == '__main__':
  app.run(main)
