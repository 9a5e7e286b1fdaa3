"""Scores a live video frame by frame with a trained run: a camera, a stream URL or a file
read as a stream (vadjax/serving/stream.py).

  python -m experiments.stream --workdir=RUN --input=rtsp://camera/stream
  python -m experiments.stream --workdir=RUN --input=/dev/video0 --input_format=v4l2
  python -m experiments.stream --workdir=RUN --input=video.avi --output=scores.jsonl

One JSON line per scored frame (frame, score, normalized, smoothed, anomalous, latency_ms)
as soon as it is scored; at the end, the compile time (before the first frame), frames/s
and the per-frame latency (p50, p99; decoding excluded) on stderr.
"""

import json
import sys
import time

import numpy as np
from absl import app, flags

from experiments.cli import define_run_flags, run_or_fail, start
from vadjax.data import formats
from vadjax.serving.stream import StreamScorer

_RESTORE = define_run_flags()
_INPUT = flags.DEFINE_string('input', None, 'A video file, a stream URL or a device.',
                             required=True)
_INPUT_FORMAT = flags.DEFINE_string('input_format', None, 'FFmpeg input format of a device '
                                    '(v4l2, avfoundation, dshow).')
_THRESHOLD = flags.DEFINE_string('threshold', 'gmean', 'A persisted threshold by name, or a '
                                 'number in the normalised score space.')
_SMOOTHING = flags.DEFINE_integer('smoothing', 5, 'Frames in the causal moving mean.')
_MAX_FRAMES = flags.DEFINE_integer('max_frames', 0, 'Stop after this many frames (0: the '
                                   'end of the stream).')
_OUTPUT = flags.DEFINE_string('output', '-', 'JSON-lines file; - for stdout.')


def _write(out, scored) -> None:
  for s in scored:
    out.write(json.dumps({'frame': s.frame, 'score': s.score, 'normalized': s.normalized,
                          'smoothed': s.smoothed, 'anomalous': s.anomalous,
                          'latency_ms': round(s.latency_s * 1e3, 3)}) + '\n')
  out.flush()


def _stream(out) -> dict:
  run = _RESTORE()
  t0 = time.perf_counter()
  scorer = StreamScorer(run, _THRESHOLD.value, _SMOOTHING.value)
  compile_s = time.perf_counter() - t0
  step_s, t0 = [], time.perf_counter()
  for i, raw in enumerate(formats.iter_video(_INPUT.value, _INPUT_FORMAT.value)):
    if _MAX_FRAMES.value and i >= _MAX_FRAMES.value:
      break
    t = time.perf_counter()
    scored = scorer.push(scorer.prepare(raw, f'{_INPUT.value} frame {i}'))
    step_s.append(time.perf_counter() - t)
    _write(out, scored)
  _write(out, scorer.flush())
  wall = time.perf_counter() - t0
  ms = np.asarray(step_s or [0.0]) * 1e3
  return {'frames': len(step_s), 'frames_per_s': len(step_s) / max(wall, 1e-9),
          'compile_s': compile_s, 'p50_ms': float(np.percentile(ms, 50)),
          'p99_ms': float(np.percentile(ms, 99))}


def main(argv):
  start(argv)
  if _OUTPUT.value == '-':
    r = run_or_fail(_stream, sys.stdout)
  else:
    with open(_OUTPUT.value, 'w') as out:
      r = run_or_fail(_stream, out)
  print(f'{r["frames"]} frames, {r["frames_per_s"]:.1f} frames/s with decoding; per frame '
        f'p50 {r["p50_ms"]:.2f} ms, p99 {r["p99_ms"]:.2f} ms (compiled in '
        f'{r["compile_s"]:.1f} s before the first frame)', file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
