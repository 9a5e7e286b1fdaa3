"""Scores a live video one frame at a time (`experiments/stream.py`: a camera, a URL or a
file read as a stream).

A clip model keeps the last T frames in a ring buffer of fixed shape; each new frame is
one jitted step: shift the buffer, score the clip. Frame f is scored, as offline
(vadjax/data/video.py), by the clip with f at its centre, so its score comes T//2 frames
after f arrives; the first T//2 frames are scored when the buffer first fills and the last
T//2 by `flush()` at the end of the stream, each at its offset in the clip, as offline
moves clips inward at a video's ends. A feature-prediction run (seed 004) scores f with
the clip that ends at f, so its score comes as f arrives. The recurrent models (ConvRNN) keep the ring buffer
too rather than carrying their hidden state across clips: they were trained, validated
and calibrated on clips from a fresh state, so carried state would score something else.
Image and patch models score each frame as it comes.

Decisions are causal: the normalised score (the run's normaliser, fitted on normal
training data) averaged over the last `smoothing` scored frames, against the threshold.
The per-video min–max normalisation and Savitzky–Golay smoothing of offline evaluation need
the whole video and have no place in a stream.
"""

import collections
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from vadjax.registry import UserError
from vadjax.serving.predict import Predictor, frame_scorer, scoring_variables


@dataclasses.dataclass
class Scored:
  frame: int                 # index in the stream
  score: float               # raw
  normalized: float
  smoothed: float            # causal mean of the last `smoothing` normalised scores
  anomalous: bool
  latency_s: float           # from the arrival of the frame that completed its clip


class StreamScorer:
  """`push(frame)` → the frames scored by it; `flush()` at the end of the stream."""

  def __init__(self, run, threshold='gmean', smoothing: int = 5):
    if smoothing < 1:
      raise UserError(f'smoothing must be at least 1 frame, got {smoothing}')
    self.predictor = Predictor(run, threshold)
    self.t = self.predictor.clip_length
    self.clip = self.predictor.kind == 'clip'
    self.shape = self.predictor.format.shape
    self.smoothing = smoothing
    fn, variables = frame_scorer(run, None), scoring_variables(run)     # the run's own forms
    a = self.anchor = self.predictor.anchor

    def score(buffer, offset):
      if self.clip:
        return fn(variables, buffer[None], offset[None])['score'][0]
      return fn(variables, buffer)['score'][0]

    def step(buffer, frame):          # fixed shapes: one compilation for the stream
      buffer = jnp.concatenate([buffer[1:], frame[None]])
      return buffer, score(buffer, jnp.int32(a))

    self._score, self._step = jax.jit(score), jax.jit(step)
    self.reset()
    # compile both now, so that no frame of the stream waits for XLA
    jax.block_until_ready((self._step(self.buffer, self.buffer[0]),
                           self._score(self.buffer, jnp.int32(0))))

  def reset(self) -> None:
    """Starts a new stream."""
    self.buffer = jnp.zeros((self.t, *self.shape), jnp.float32)
    self.count = 0
    self.recent = collections.deque(maxlen=self.smoothing)

  def prepare(self, raw: np.ndarray, name: str = 'frame') -> np.ndarray:
    """A camera frame, uint8 (H, W[, 3]), as the model's input."""
    return self.predictor.format.prepare(raw, name)

  def push(self, frame: np.ndarray) -> list[Scored]:
    """Adds a prepared frame (S, S, C) float32 in [0, 1]; returns the frames it scored."""
    t0 = time.perf_counter()
    frame = np.asarray(frame, np.float32)
    if frame.shape != self.shape:
      raise UserError(f'a stream frame must be prepared to {self.shape}, got {frame.shape}')
    self.buffer, score = jax.block_until_ready(self._step(self.buffer, frame))
    self.count += 1
    if self.count < self.t:
      return []
    if self.count == self.t:       # the first clip: its frames before the anchor as well
      raw = [self._score(self.buffer, jnp.int32(o)) for o in range(self.anchor)] + [score]
      return self._emit(0, raw, t0)
    return self._emit(self.count - self.t + self.anchor, [score], t0)

  def flush(self) -> list[Scored]:
    """The stream's frames after the last clip's anchor, scored in the last clip."""
    if not self.clip or self.count < self.t:
      return []
    t0 = time.perf_counter()
    raw = [self._score(self.buffer, jnp.int32(o)) for o in range(self.anchor + 1, self.t)]
    return self._emit(self.count - self.t + self.anchor + 1, raw, t0)

  def _emit(self, first: int, raw, t0: float) -> list[Scored]:
    raw = np.asarray(jax.device_get(raw), np.float64)
    latency = time.perf_counter() - t0
    out = []
    for i, r in enumerate(raw):
      n = float(self.predictor.normalizer(r))
      self.recent.append(n)
      smooth = float(np.mean(self.recent))
      out.append(Scored(first + i, float(r), n, smooth, smooth > self.predictor.threshold,
                        latency))
    return out
