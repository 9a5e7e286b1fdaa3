"""A small scoring server over HTTP/1.1 (`experiments/serve.py`), on the standard library's
ThreadingHTTPServer: no web framework to install, and nothing it would add is needed here.
A thread per connection decodes and checks its request; the scoring runs in one thread
that batches the frames of concurrent requests (image, patch and one-frame clip models)
up to the run's eval batch size, the size every call is padded to, so that no request
compiles. A clip model's request (one video) is scored on its own, one at a time.

  GET  /health   the run, its input, its thresholds and the limits
  POST /score    an image file (Content-Type image/* or application/octet-stream), or JSON
                 {"image": base64} | {"images": [base64, ...]} | {"frames": [base64, ...]}
                 (frames: one video, in order; what clip models need), and optionally
                 "threshold" (also ?threshold=): a persisted name or a number
  →  {"results": [{"frame", "score", "normalized", "anomalous"}, ...],
      "threshold", "threshold_value"}

Bad requests get a 4xx JSON error and change nothing: malformed JSON or base64, not an
image (400), a body over `max_bytes` or an image over `max_pixels` (413), no length (411),
another content type (415), too few frames for a clip or too many (400), unknown paths
(404) and methods (405). An unexpected error answers 500; the server keeps serving.
"""

import base64
import binascii
import dataclasses
import io
import json
import queue
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from absl import logging
from PIL import Image

from vadjax.registry import UserError
from vadjax.serving.predict import Predictor, threshold_of


@dataclasses.dataclass(frozen=True)
class Limits:
  max_bytes: int = 16 << 20          # request body
  max_pixels: int = 4096 * 4096      # per decoded image
  max_frames: int = 1024             # per request
  timeout_s: float = 30.0            # a client that stops sending


class RequestError(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


class ScoringServer(ThreadingHTTPServer):
  daemon_threads = True

  def __init__(self, address, predictor: Predictor, limits: Limits = Limits()):
    self.predictor, self.limits = predictor, limits
    self.lock, self._count_lock = threading.Lock(), threading.Lock()
    self.counts = {'ok': 0, 'rejected': 0, 'failed': 0}
    super().__init__(address, _Handler)
    self._warm_up()
    self.batcher = _Batcher(predictor)

  def _warm_up(self) -> None:
    """Compiles the scoring call before the first request."""
    p = self.predictor
    frames = np.zeros((p.clip_length, *p.format.shape), np.float32)
    p.score(frames, video=p.kind == 'clip')

  def count(self, outcome: str) -> None:
    with self._count_lock:
      self.counts[outcome] += 1

  def health(self) -> dict:
    p = self.predictor
    return {'status': 'ok', 'run': p.run.name, 'model': p.run.config.model,
            'method': p.run.config.method,
            'input': {'kind': p.kind, 'frame_shape': list(p.format.shape),
                      'clip_length': p.clip_length},
            'thresholds': p.run.thresholds, 'threshold': p.threshold_name,
            'limits': dataclasses.asdict(self.limits), 'requests': dict(self.counts)}

  def decode(self, data: bytes, name: str) -> np.ndarray:
    try:
      with Image.open(io.BytesIO(data)) as im:
        pixels = im.width * im.height
    except Exception:  # noqa: BLE001  (Pillow raises many kinds for non-images)
      raise RequestError(400, f'{name} is not an image Pillow can read') from None
    if pixels > self.limits.max_pixels:
      raise RequestError(413, f'{name} has {pixels} pixels; the limit is '
                              f'{self.limits.max_pixels}')
    try:
      return self.predictor.format.decode(data, name)
    except UserError as e:
      raise RequestError(400, str(e)) from None

  def score(self, frames: np.ndarray, video: bool, threshold) -> dict:
    p = self.predictor
    name, value = threshold_of(p.run.thresholds, threshold if threshold is not None
                               else p.threshold_name)
    if p.clip_length > 1:       # one video: its clips overlap, scored in one call
      with self.lock:
        s = p.score(frames, video=video)
      raw, normalized = s.raw, s.normalized
    else:
      raw, normalized = self.batcher.score(frames)
    return {'results': [{'frame': i, 'score': float(r), 'normalized': float(n),
                         'anomalous': bool(n > value)}
                        for i, (r, n) in enumerate(zip(raw, normalized))],
            'threshold': name, 'threshold_value': value}


class _Batcher:
  """Scores the frames of concurrent requests together (image and patch models): one
  thread takes every waiting request, up to the eval batch, into one scoring call, which
  is padded to that batch anyway. Under load this turns N single-image calls into one."""

  def __init__(self, predictor: Predictor):
    self.predictor, self.size = predictor, predictor.run.config.eval_batch_size
    self.queue = queue.Queue()
    threading.Thread(target=self._loop, daemon=True, name='scoring').start()

  def score(self, frames: np.ndarray):
    """(raw, normalised) scores of `frames`, each scored on its own."""
    job = {'frames': frames, 'done': threading.Event()}
    self.queue.put(job)
    job['done'].wait()
    if 'error' in job:
      raise job['error']
    return job['raw'], job['normalized']

  def _loop(self) -> None:
    while True:
      jobs = [self.queue.get()]
      n = len(jobs[0]['frames'])
      while n < self.size:
        try:
          jobs.append(self.queue.get_nowait())
        except queue.Empty:
          break
        n += len(jobs[-1]['frames'])
      try:
        s = self.predictor.score(np.concatenate([j['frames'] for j in jobs]))
        start = 0
        for j in jobs:
          stop = start + len(j['frames'])
          j['raw'], j['normalized'] = s.raw[start:stop], s.normalized[start:stop]
          start = stop
      except Exception as e:  # noqa: BLE001  (handed to every waiting request)
        for j in jobs:
          j['error'] = e
      for j in jobs:
        j['done'].set()


class _Handler(BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'
  server: ScoringServer

  def setup(self):
    super().setup()
    self.connection.settimeout(self.server.limits.timeout_s)

  def log_message(self, fmt, *args):
    logging.debug('%s ' + fmt, self.address_string(), *args)

  def _send(self, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    self.send_response(status)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    if status >= 400 and self.close_connection:
      self.send_header('Connection', 'close')
    self.end_headers()
    self.wfile.write(data)

  def _answer(self, handle) -> None:
    try:
      status, body = 200, handle()
      self.server.count('ok')
    except RequestError as e:
      status, body = e.status, {'error': str(e)}
      self.server.count('rejected')
    except Exception as e:  # noqa: BLE001  (a bug must not stop the server)
      logging.exception('request failed')
      status, body = 500, {'error': f'internal error: {type(e).__name__}'}
      self.server.count('failed')
    self._send(status, body)

  def do_GET(self):
    path = urllib.parse.urlsplit(self.path).path
    if path == '/health':
      self._answer(self.server.health)
    elif path == '/score':
      self._answer(_raise(405, 'use POST for /score'))
    else:
      self._answer(_raise(404, f'no {path}; use GET /health or POST /score'))

  def do_POST(self):
    url = urllib.parse.urlsplit(self.path)
    if url.path != '/score':
      self._drain_or_close()
      self._answer(_raise(404 if url.path != '/health' else 405,
                          f'no POST {url.path}; use POST /score'))
      return
    query = urllib.parse.parse_qs(url.query)
    self._answer(lambda: self._score(query.get('threshold', [None])[0]))

  def do_PUT(self):
    self._drain_or_close()
    self._answer(_raise(405, 'use GET /health or POST /score'))

  do_DELETE = do_PATCH = do_PUT

  def _drain_or_close(self) -> None:
    """Drops a body this server will not read, keeping the connection usable if small."""
    n = self._length(required=False)
    if 0 < n <= self.server.limits.max_bytes:
      self.rfile.read(n)
    elif n:
      self.close_connection = True

  def _length(self, required: bool = True) -> int:
    text = self.headers.get('Content-Length')
    if text is None:
      if required:
        self.close_connection = True
        raise RequestError(411, 'a Content-Length header is required')
      return 0
    try:
      n = int(text)
    except ValueError:
      n = -1
    if n < 0:
      self.close_connection = True
      raise RequestError(400, f'bad Content-Length {text!r}')
    return n

  def _body(self) -> bytes:
    n = self._length()
    if n > self.server.limits.max_bytes:
      self.close_connection = True        # the body is not read: the connection ends
      raise RequestError(413, f'the body has {n} bytes; the limit is '
                              f'{self.server.limits.max_bytes}')
    data = self.rfile.read(n)
    if len(data) != n:
      self.close_connection = True
      raise RequestError(400, f'the body ended after {len(data)} of {n} bytes')
    return data

  def _score(self, threshold) -> dict:
    data = self._body()
    kind = self.headers.get('Content-Type', '').split(';')[0].strip().lower()
    if kind.startswith('image/') or kind == 'application/octet-stream':
      frames, video = self.server.decode(data, 'the body')[None], False
    elif kind == 'application/json':
      frames, video, threshold = self._json_frames(data, threshold)
    else:
      raise RequestError(415, f'Content-Type {kind or "(none)"}; send an image (image/png, '
                              f'image/jpeg, ...) or application/json')
    try:
      return self.server.score(frames, video, threshold)
    except UserError as e:
      raise RequestError(400, str(e)) from None

  def _json_frames(self, data: bytes, threshold):
    try:
      body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise RequestError(400, f'malformed JSON: {e}') from None
    if not isinstance(body, dict):
      raise RequestError(400, 'the JSON body must be an object')
    keys = [k for k in ('image', 'images', 'frames') if k in body]
    if len(keys) != 1:
      raise RequestError(400, 'give exactly one of "image", "images" or "frames"')
    items = body[keys[0]] if keys[0] != 'image' else [body['image']]
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
      raise RequestError(400, f'"{keys[0]}" must hold base64-encoded image files')
    if len(items) > self.server.limits.max_frames:
      raise RequestError(400, f'{len(items)} images; the limit is '
                              f'{self.server.limits.max_frames} per request')
    frames = []
    for i, text in enumerate(items):
      try:
        raw = base64.b64decode(text, validate=True)
      except (binascii.Error, ValueError):
        raise RequestError(400, f'{keys[0]}[{i}] is not valid base64') from None
      frames.append(self.server.decode(raw, f'{keys[0]}[{i}]'))
    threshold = body.get('threshold', threshold)
    if threshold is not None and not isinstance(threshold, (str, int, float)):
      raise RequestError(400, '"threshold" must be a name or a number')
    return np.stack(frames), keys[0] == 'frames', threshold


def _raise(status: int, message: str):
  def handle():
    raise RequestError(status, message)
  return handle


def make_server(run, host: str = '127.0.0.1', port: int = 8080, threshold='gmean',
                limits: Limits = Limits()) -> ScoringServer:
  """A server for `run` bound to (host, port) (port 0: any free one); call
  `serve_forever()` on it."""
  return ScoringServer((host, port), Predictor(run, threshold), limits)
