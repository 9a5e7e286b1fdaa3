"""A bounded load test of a scoring server (`experiments/serve_load.py`, and the tests):
N concurrent clients, each on its own keep-alive connection, send valid requests and
record the latency of each; then a fixed set of hostile and malformed requests, each of
which must get its 4xx answer and be followed by a valid request that succeeds; then the
server must still answer /health and a valid request."""

import base64
import concurrent.futures
import http.client
import io
import json
import time

import numpy as np
from PIL import Image

from vadjax.serving.inputs import png


def valid_request(frames: np.ndarray, clip: bool) -> tuple[dict, bytes]:
  """(headers, body) scoring one frame (image models) or a clip's frames (clip models)."""
  if clip:
    body = json.dumps({'frames': [base64.b64encode(png(f)).decode() for f in frames]})
    return {'Content-Type': 'application/json'}, body.encode()
  return {'Content-Type': 'image/png'}, png(frames[0])


def malformed_requests(clip_length: int, limits=None) -> list[tuple[str, str, dict, bytes, int]]:
  """(name, method + path, headers, body, expected status) of hostile or malformed requests
  a server with `limits` (default: vadjax/serving/requests.Limits()) must refuse."""
  from vadjax.serving.requests import Limits
  limits = limits or Limits()
  side = int(limits.max_pixels ** 0.5)
  big, fits = io.BytesIO(), io.BytesIO()
  Image.new('L', (side + 1, side + 1)).save(big, format='PNG')  # over the frame limit
  Image.new('L', (side, side)).save(fits, format='PNG')   # at it: a few over the request's
  many = int(limits.max_request_pixels // side ** 2) + 1
  tiny = base64.b64encode(png(np.zeros((8, 8, 1)))).decode()
  j = {'Content-Type': 'application/json'}
  dump = lambda body: json.dumps(body).encode()
  cases = [
      ('not an image', 'POST /score', {'Content-Type': 'image/png'}, b'GIF89a? no', 400),
      ('not a video', 'POST /score', {'Content-Type': 'video/mp4'}, b'\x00\x00\x00 ftyp', 400),
      ('malformed JSON', 'POST /score', j, b'{"image": ', 400),
      ('deeply nested JSON', 'POST /score', j,
       b'{"image": ' + b'[' * 200_000 + b']' * 200_000 + b'}', 400),
      ('JSON not an object', 'POST /score', j, b'[1, 2]', 400),
      ('bad base64', 'POST /score', j, b'{"image": "%%%"}', 400),
      ('truncated base64', 'POST /score', j, dump({'image': tiny[:-3]}), 400),
      ('base64 of no image', 'POST /score', j, dump({'image': 'aGVsbG8gd29ybGQ='}), 400),
      ('no image key', 'POST /score', j, b'{"picture": "AAAA"}', 400),
      ('two image keys', 'POST /score', j, dump({'image': tiny, 'images': [tiny]}), 400),
      ('wrong field type', 'POST /score', j, dump({'images': 'AAAA'}), 400),
      ('wrong content type', 'POST /score', {'Content-Type': 'text/plain'}, b'hello', 415),
      ('image too large', 'POST /score', {'Content-Type': 'image/png'}, big.getvalue(), 413),
      ('request pixels over the budget', 'POST /score', j, dump(
          {'images': [base64.b64encode(fits.getvalue()).decode()] * many}), 413),
      ('too many frames', 'POST /score', j,
       dump({'images': [tiny] * (int(limits.max_frames) + 1)}), 413),
      ('body too large', 'POST /score', {'Content-Type': 'image/png',
                                         'Content-Length': str(1 << 40)}, b'', 413),
      ('unknown path', 'GET /nothing', {}, b'', 404),
      ('wrong method', 'GET /score', {}, b'', 405),
      ('unknown threshold', 'POST /score?threshold=best', {'Content-Type': 'image/png'},
       base64.b64decode(tiny), 400),
      ('unknown run', 'POST /score?run=nobody', {'Content-Type': 'image/png'},
       base64.b64decode(tiny), 404)]
  if clip_length > 1:
    cases.append(('too few frames', 'POST /score', j,
                  dump({'frames': [tiny] * (clip_length - 1)}), 400))
  return cases


def stalled_request(host: str, port: int, wait_s: float) -> int | str:
  """Sends a request's headers and half its body, then nothing, while another connection
  has sent half its headers and stalls too: the status the server answers the first
  within `wait_s` (clients that stop sending must not hold the server)."""
  import socket
  with socket.create_connection((host, port), timeout=wait_s) as slow_headers, \
      socket.create_connection((host, port), timeout=wait_s) as sock:
    slow_headers.sendall(b'POST /score HTTP/1.1\r\nHo')
    sock.sendall(b'POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n'
                 b'Content-Length: 1000\r\n\r\n' + b'\x89PNG' + b'0' * 496)
    try:
      head = sock.recv(64).decode(errors='replace')
    except TimeoutError:
      return 'no answer'
  return int(head.split()[1]) if head.startswith('HTTP/') else head


def _request(conn, method_path: str, headers: dict, body: bytes):
  method, path = method_path.split(' ', 1)
  t = time.perf_counter()
  conn.request(method, path, body=body or None, headers=headers)
  resp = conn.getresponse()
  data = resp.read()
  return resp.status, data, time.perf_counter() - t


def run(host: str, port: int, headers: dict, body: bytes, clients: int, requests: int,
        clip_length: int = 1, timeout_s: float = 120.0, limits=None) -> dict:
  """The load test's numbers: valid latencies (p50, p99), failures, rejections."""
  def client(_):
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    out = []
    try:
      for _ in range(requests):
        try:
          status, data, dt = _request(conn, 'POST /score', headers, body)
          ok = status == 200 and 'results' in json.loads(data)
        except (OSError, http.client.HTTPException, ValueError):
          ok, dt = False, float('nan')
          conn.close()
          conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        out.append((ok, dt))
    finally:
      conn.close()
    return out

  t0 = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    results = [r for rs in pool.map(client, range(clients)) for r in rs]
  wall = time.perf_counter() - t0
  lat = np.asarray([dt for ok, dt in results if ok]) * 1e3
  rejected = {}
  for name, mp, h, b, want in malformed_requests(clip_length, limits):
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
      status = _request(conn, mp, h, b)[0]
    except (OSError, http.client.HTTPException) as e:
      status = f'{type(e).__name__}'
    finally:
      conn.close()
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:                    # a valid request right after it still succeeds
      after = _request(conn, 'POST /score', headers, body)[0]
    except (OSError, http.client.HTTPException) as e:
      after = f'{type(e).__name__}'
    finally:
      conn.close()
    rejected[name] = {'status': status, 'expected': want, 'valid_after': after}
  conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
  try:
    up = _request(conn, 'GET /health', {}, b'')[0] == 200 and \
        _request(conn, 'POST /score', headers, body)[0] == 200
  except (OSError, http.client.HTTPException):
    up = False
  finally:
    conn.close()
  return {'clients': clients, 'requests': len(results),
          'failed': sum(not ok for ok, _ in results), 'wall_s': wall,
          'requests_per_s': len(results) / wall,
          'p50_ms': float(np.percentile(lat, 50)) if len(lat) else None,
          'p99_ms': float(np.percentile(lat, 99)) if len(lat) else None,
          'malformed': rejected,
          'malformed_rejected': sum(r['status'] == r['expected'] and r['valid_after'] == 200
                                    for r in rejected.values()),
          'up_at_end': up}


def paired_latency(predictor, frames, port: int, headers: dict, body: bytes,
                   pairs: int = 100) -> dict:
  """A lone client's latency against the model's own compute for the same request (the
  scoring call alone at its batch bucket: no HTTP, no decoding), measured in alternation
  so that both see the same machine: medians of each and their ratio."""
  records = predictor.records(frames, predictor.kind == 'clip')
  x, offsets = predictor.take(records, 0, len(records))
  conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  compute, latency = [], []
  try:
    for i in range(pairs + 5):
      t = time.perf_counter()
      predictor.score_records(x, offsets)
      t1 = time.perf_counter()
      conn.request('POST', '/score', body=body, headers=headers)
      response = conn.getresponse()
      response.read()
      t2 = time.perf_counter()
      if response.status != 200:
        raise RuntimeError(f'a valid request got {response.status}')
      if i >= 5:                     # the first few warm both paths
        compute.append(t1 - t)
        latency.append(t2 - t1)
  finally:
    conn.close()
  c, lat = float(np.median(compute) * 1e3), float(np.median(latency) * 1e3)
  return {'request_compute_ms': c, 'lone_p50_ms': lat, 'lone_over_compute': lat / c}


def full_batch_ms(predictor, frames, port: int, repeats: int = 20) -> float:
  """A lone client's p50 latency for one request of a whole eval batch of frames (JSON)."""
  key = 'frames' if predictor.kind == 'clip' else 'images'
  pngs = [base64.b64encode(png(frames[i % len(frames)])).decode()
          for i in range(max(predictor.max_batch, predictor.clip_length))]
  body = json.dumps({key: pngs}).encode()
  conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  times = []
  try:
    for _ in range(repeats + 2):
      t = time.perf_counter()
      conn.request('POST', '/score', body=body, headers={'Content-Type': 'application/json'})
      response = conn.getresponse()
      response.read()
      times.append(time.perf_counter() - t)
      if response.status != 200:
        raise RuntimeError(f'a valid batch request got {response.status}')
  finally:
    conn.close()
  return float(np.median(times[2:]) * 1e3)
