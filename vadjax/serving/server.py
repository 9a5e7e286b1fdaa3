"""The scoring server (`experiments/serve.py`): FastAPI on uvicorn.

FastAPI, not bare Starlette: the request schema is a pydantic model, validated by a parser
that bounds nesting, and the OpenAPI description comes from the code. uvicorn serves it;
this module adds what a deployment needs and neither does: request body limits as the
body arrives, a drain on SIGTERM and the per-run batcher (vadjax/serving/batcher.py).

  GET  /              the page: drop an image, frames or a video; score, heat map, timeline
  GET  /browse        the runs page: every workdir under --root, sortable (vadjax/serving/runs.py)
  GET  /health        liveness, the default run, its input, thresholds, limits and counts
  GET  /ready         200 once every bucket is compiled; 503 while warming or draining
  GET  /api/runs      the served runs
  POST /score         an image file (image/*, application/octet-stream), a video file
                      (video/*), or JSON (vadjax/serving/requests.ScoreRequest); ?threshold=,
                      ?run=, ?maps=1 in the query too
  →  {"results": [{"frame", "score", "normalized", "anomalous"[, "image", "heatmap"]}, ...],
      "run", "threshold", "threshold_value"[, "map_scale"]}
  GET  /openapi.json, /docs (the API, as a page of this server: nothing fetched from the
  internet)

A refused request gets a 4xx and {"error": one line}; the server keeps serving. On SIGTERM
the server drains: /ready and new requests answer 503 for `drain_s`, requests in flight
finish, then uvicorn closes.
"""

import asyncio
import base64
import dataclasses
import os
import threading

import numpy as np
from absl import logging
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from vadjax.registry import UserError
from vadjax.serving import inputs as inputs_lib, runs as runs_lib
from vadjax.serving.batcher import Batcher
from vadjax.serving.predict import Predictor, threshold_of
from vadjax.serving.requests import (IMAGE_TYPES, VIDEO_TYPES, Decoder, Limits, RequestError,
                                     ScoreRequest, items_of, parse_json)

STATIC = os.path.join(os.path.dirname(__file__), 'static')


@dataclasses.dataclass
class Served:
  """A run being served: its predictor, decoder and batcher."""
  id: str
  predictor: Predictor
  decoder: Decoder
  batcher: Batcher

  def info(self) -> dict:
    p = self.predictor
    return {'id': self.id, 'run': p.run.name, 'model': p.run.config.model,
            'method': p.run.config.method,
            'input': {'kind': p.kind, 'frame_shape': list(p.format.shape),
                      'clip_length': p.clip_length},
            'thresholds': p.run.thresholds, 'threshold': p.threshold_name,
            'buckets': p.buckets}


class State:
  def __init__(self, served: list[Served], limits: Limits, root: str, drain_s: float):
    self.served = {s.id: s for s in served}
    self.limits, self.root, self.drain_s = limits, root, drain_s
    self.ready = threading.Event()
    self.draining = False
    self.counts = {'ok': 0, 'rejected': 0, 'failed': 0}

  def run(self, run_id: str | None) -> Served:
    if not self.served:
      raise RequestError(404, 'this server serves no run (it browses runs only)')
    if run_id is None:
      return next(iter(self.served.values()))
    if run_id not in self.served:
      raise RequestError(404, f'no served run {run_id!r}; served: {", ".join(self.served)}')
    return self.served[run_id]


def _error(status: int, message: str) -> JSONResponse:
  return JSONResponse({'error': message}, status_code=status)


class _Guard:
  """ASGI middleware: 503 while draining, 413 for a body over the limit (from its
  Content-Length, or counted as it arrives), 408 for a body that stops arriving."""

  def __init__(self, app, state: State):
    self.app, self.state = app, state

  async def __call__(self, scope, receive, send):
    if scope['type'] != 'http':
      return await self.app(scope, receive, send)
    if self.state.draining and scope['path'] not in ('/health', '/ready'):
      self.state.counts['rejected'] += 1
      return await _error(503, 'the server is shutting down')(scope, receive, send)
    limit, timeout = self.state.limits.max_bytes, self.state.limits.timeout_s
    length = dict(scope['headers']).get(b'content-length')
    if length is not None and (not length.isdigit() or int(length) > limit):
      status = 413 if length.isdigit() else 400
      message = (f'the body has {int(length)} bytes; the limit is {limit}' if status == 413
                 else f'bad Content-Length {length.decode(errors="replace")!r}')
      self.state.counts['rejected'] += 1
      return await _error(status, message)(scope, receive, send)
    seen = 0

    async def bounded_receive():
      nonlocal seen
      try:
        async with asyncio.timeout(timeout):      # (wait_for would start a task per call)
          message = await receive()
      except TimeoutError:
        raise RequestError(408, f'the body stopped arriving for {timeout:g} s') from None
      seen += len(message.get('body', b''))
      if seen > limit:
        raise RequestError(413, f'the body is over the limit of {limit} bytes')
      return message

    await self.app(scope, bounded_receive, send)


def make_app(runs, limits: Limits = Limits(), threshold: str = 'gmean', root: str = '',
             drain_s: float = 0.0, ids: list[str] | None = None) -> FastAPI:
  """The app serving the trained `runs` (and browsing the workdirs under `root`); its
  buckets compile in a thread at start (/ready says when)."""
  ids = ids or runs_lib.unique_ids(runs)
  served = []
  for run_id, run in zip(ids, runs):
    p = Predictor(run, threshold)
    served.append(Served(run_id, p, Decoder(p.format, limits), Batcher(p)))
  state = State(served, limits, os.path.abspath(root) if root else '', drain_s)

  def warm():
    try:
      for s in served:
        s.predictor.warm_up()
    except Exception as e:  # noqa: BLE001  (/ready stays 503; the log says why)
      logging.error('warm-up failed, the server will not become ready: %s: %s',
                    type(e).__name__, e)
      return
    state.ready.set()
    logging.info('ready: %d run(s) compiled at batches %s', len(served),
                 served[0].predictor.buckets if served else [])

  app = FastAPI(title='vadjax scoring server', docs_url=None, redoc_url=None,
                description='Scores frames, videos and images with trained vadjax runs.')
  app.state.vadjax = state
  threading.Thread(target=warm, daemon=True, name='warm-up').start()
  _errors(app, state)
  _routes(app, state)
  app.mount('/static', StaticFiles(directory=STATIC), name='static')
  if state.root:
    runs_lib.routes(app, state.root, STATIC)
  app.add_middleware(_Guard, state=state)
  return app


def _errors(app: FastAPI, state: State) -> None:
  @app.exception_handler(RequestError)
  async def refused(_, e: RequestError):
    state.counts['rejected'] += 1
    return _error(e.status, str(e))

  @app.exception_handler(HTTPException)
  async def http_error(request: Request, e: HTTPException):
    state.counts['rejected'] += 1
    where = f'{request.method} {request.url.path}'
    message = {404: f'no {where}; the API is at /docs',
               405: f'{where} is not allowed; the API is at /docs'}.get(e.status_code,
                                                                       str(e.detail))
    return _error(e.status_code, message)

  @app.exception_handler(RequestValidationError)
  async def invalid(_, e: RequestValidationError):
    state.counts['rejected'] += 1
    err = e.errors()[0]
    return _error(400, f'{".".join(map(str, err["loc"]))}: {err["msg"]}')

  @app.exception_handler(Exception)
  async def failed(_, e: Exception):
    state.counts['failed'] += 1
    logging.error('request failed: %s: %s', type(e).__name__, e)
    return _error(500, f'internal error: {type(e).__name__}')


def _routes(app: FastAPI, state: State) -> None:
  @app.get('/', include_in_schema=False)
  async def page():
    return FileResponse(os.path.join(STATIC, 'index.html'))

  @app.get('/docs', include_in_schema=False)
  async def docs():
    return FileResponse(os.path.join(STATIC, 'api.html'))

  @app.get('/health')
  async def health():
    out = {'status': 'ok', 'ready': state.ready.is_set(), 'draining': state.draining,
           'limits': dataclasses.asdict(state.limits), 'requests': dict(state.counts),
           'runs': [s.info() for s in state.served.values()]}
    if state.served:                        # the default run's fields, as before
      info = state.run(None).info()
      out.update({k: info[k] for k in ('run', 'model', 'method', 'input', 'thresholds',
                                       'threshold')})
    return out

  @app.get('/ready')
  async def ready():
    ok = state.ready.is_set() and not state.draining
    return JSONResponse({'ready': ok}, status_code=200 if ok else 503)

  @app.get('/api/runs')
  async def served_runs():
    return {'runs': [s.info() for s in state.served.values()], 'browse': bool(state.root)}

  body_doc = {'requestBody': {'required': True, 'content': {
      'application/json': {'schema': ScoreRequest.model_json_schema()},
      'image/*': {'schema': {'type': 'string', 'format': 'binary'}},
      'video/*': {'schema': {'type': 'string', 'format': 'binary'}}}}}

  @app.post('/score', openapi_extra=body_doc)
  async def score(request: Request, threshold: str | None = None, run: str | None = None,
                  maps: bool = False):
    kind = request.headers.get('content-type', '').split(';')[0].strip().lower()
    if not kind.startswith(IMAGE_TYPES + VIDEO_TYPES) and kind != 'application/json':
      raise RequestError(415, f'Content-Type {kind or "(none)"}; send an image (image/png, '
                              f'image/jpeg, ...), a video (video/mp4, ...) or '
                              f'application/json')
    data = await request.body()
    if not state.ready.is_set():
      raise RequestError(503, 'the server is still compiling; try again in a few seconds')
    if kind == 'application/json':
      body = parse_json(data)
      threshold = body.threshold if body.threshold is not None else threshold
      run, maps = body.run or run, body.maps or maps
    served = state.run(run)
    name, value = _threshold(served, threshold)
    if kind == 'application/json':
      key, items = items_of(body)
      frames = await run_in_threadpool(served.decoder.base64_images, key, items)
      video = key == 'frames'
    elif kind.startswith(VIDEO_TYPES):
      frames, video = await run_in_threadpool(served.decoder.video, data), True
    elif served.decoder.small(data):      # decoded here: a thread hop costs more
      frames, video = served.decoder.images([data], ['the body']), False
    else:
      frames, video = await run_in_threadpool(served.decoder.images, [data], ['the body']), \
          False
    try:
      future = served.batcher.submit(frames, video, keep_maps=maps)
    except UserError as e:
      raise RequestError(400, str(e)) from None
    out = await asyncio.wrap_future(future)
    answer = (await run_in_threadpool(_answer, served, frames, out, value, maps) if maps
              else _answer(served, frames, out, value, maps))
    state.counts['ok'] += 1
    return JSONResponse({**answer, 'run': served.id, 'threshold': name,
                         'threshold_value': value})


def _threshold(served: Served, choice) -> tuple[str, float]:
  p = served.predictor
  try:
    return threshold_of(p.run.thresholds, choice if choice is not None else p.threshold_name)
  except UserError as e:
    raise RequestError(400, str(e)) from None


def _answer(served: Served, frames, out: dict, value: float, maps: bool) -> dict:
  p = served.predictor
  normalized = p.normalizer(out['score'])
  results = [{'frame': i, 'score': float(r), 'normalized': float(n), 'anomalous': bool(n > value)}
             for i, (r, n) in enumerate(zip(out['score'], normalized))]
  if not maps:
    return {'results': results}
  pixel = out.get('pixel')
  scale = float(np.max(pixel)) if pixel is not None and pixel.size else 0.0
  corners = p.corner_of(out)
  for i, r in enumerate(results):
    r['image'] = _base64_png(frames[i])
    if pixel is not None:
      heat = np.zeros(frames.shape[1:3], np.float32)
      y, x = corners[i] if corners is not None else (0, 0)
      m = pixel[i].reshape(pixel.shape[1], pixel.shape[2])
      heat[y:y + m.shape[0], x:x + m.shape[1]] = m / max(scale, 1e-12)
      r['heatmap'] = _base64_png(heat[..., None])
  return {'results': results, 'map_scale': scale}


def _base64_png(frame: np.ndarray) -> str:
  return base64.b64encode(inputs_lib.png(frame)).decode()
