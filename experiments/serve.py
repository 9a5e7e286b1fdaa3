"""Serves a trained run's scores over HTTP (vadjax/serving/server.py).

  python -m experiments.serve --workdir=RUN [--host=127.0.0.1 --port=8080]
      [--threshold=gmean] [--max_bytes=16777216 --max_pixels=16777216 --max_frames=1024]

  curl -s localhost:8080/health
  curl -s -H 'Content-Type: image/png' --data-binary @frame.png localhost:8080/score
"""

from absl import app, flags, logging

from experiments.cli import define_run_flags, fail, run_or_fail, start
from vadjax.serving.server import Limits, make_server

_RESTORE = define_run_flags()
_HOST = flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every '
                            'interface).')
_PORT = flags.DEFINE_integer('port', 8080, 'Port to listen on (0: any free one).')
_THRESHOLD = flags.DEFINE_string('threshold', 'gmean', 'Default threshold (requests may '
                                 'choose another).')
_MAX_BYTES = flags.DEFINE_integer('max_bytes', Limits.max_bytes, 'Largest request body.')
_MAX_PIXELS = flags.DEFINE_integer('max_pixels', Limits.max_pixels, 'Largest image.')
_MAX_FRAMES = flags.DEFINE_integer('max_frames', Limits.max_frames, 'Most images per request.')


def _server():
  run = _RESTORE()
  limits = Limits(_MAX_BYTES.value, _MAX_PIXELS.value, _MAX_FRAMES.value)
  try:
    return make_server(run, _HOST.value, _PORT.value, _THRESHOLD.value, limits)
  except OSError as e:
    fail(f'cannot listen on {_HOST.value}:{_PORT.value}: {e.strerror or e}')


def main(argv):
  start(argv)
  server = run_or_fail(_server)
  host, port = server.server_address[:2]
  logging.info('serving %s on http://%s:%d (GET /health, POST /score)',
               server.predictor.run.name, host, port)
  print(f'serving on http://{host}:{port}', flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


if __name__ == '__main__':
  app.run(main)
