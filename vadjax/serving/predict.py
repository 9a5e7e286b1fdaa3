"""A trained run as a scorer of frames: the scoring function of every run kind on raw
frames, compiled at a few batch sizes, and the Predictor that files, streams and the
server score with.

Frames are scored as evaluation scores the test split (vadjax/train/evaluate.py): clip
models (video) score frame f with the stride-1 clip that has f at its centre, moved
inward at a video's ends (vadjax/data/video.py); feature-prediction runs (seed 004) with
the clip that ends at f (their predictor looks back), each of its frames through the
frozen backbone and the training features' standardisation first; patch models score a
frame by its worst patch on the `data.patches.test_stride` grid; image models score each
frame on its own. `frame_scorer` is that scoring as one pure function of raw frames
(patches cut and backbone features computed inside it), for serving, export and streams.

Each scoring call runs at the smallest compiled batch size ("bucket": 1, 2, 4, ... up to
the run's eval batch) that holds it, so a lone frame costs one frame's compute, not a
padded eval batch's.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from vadjax.data import patches as patches_lib
from vadjax.data.sources import ArraySource
from vadjax.data.video import ClipSource, Video
from vadjax.methods import feature_cache
from vadjax.progress import Progress
from vadjax.registry import UserError
from vadjax.serving import inputs as inputs_lib
from vadjax.train import steps as steps_lib


def is_feature_run(run) -> bool:
  return run.config.method == 'feature_prediction'


def input_kind(config, image_shape) -> str:
  """'clip' (the model sees clips), 'patches' (frames scored by their patches) or 'image'."""
  if len(image_shape) == 4:
    return 'clip'
  return 'patches' if config.data.patches.size > 0 else 'image'


def frontend(run) -> dict:
  """A feature run's backbone and standardisation (loaded once per run)."""
  if not hasattr(run, '_frontend'):
    s = run.method.s
    saved = feature_cache.load_frontend(
        os.path.join(os.path.dirname(os.path.dirname(run.run_dir)), 'cache'), run.category)
    side = s['input_size'] or saved['frame_shape'][-2]
    module, variables = feature_cache.backbone(s, side)
    run._frontend = {**saved, 'module': module, 'backbone': variables, 'side': side,
                     'pool': s['pool']}
  return run._frontend


def frame_shape(run) -> tuple:
  """The shape of one raw frame the run scores: (S, S, C) (a patch model's whole frame)."""
  if is_feature_run(run):
    return tuple(frontend(run)['frame_shape'][-3:])
  if input_kind(run.config, run.image_shape) == 'patches':
    s = run.config.image_size
    return (s, s, run.image_shape[-1])
  return tuple(run.image_shape[-3:])


def input_shape(run) -> tuple:
  """The shape of one input of `frame_scorer` (no batch dimension): a frame, or a clip of
  frames."""
  if input_kind(run.config, run.image_shape) == 'clip':
    return (run.image_shape[0], *frame_shape(run))
  return frame_shape(run)


def clip_anchor(run) -> int:
  """Where in its clip a video's frame is scored (away from the video's ends)."""
  return run.image_shape[0] - 1 if is_feature_run(run) else run.image_shape[0] // 2


def patch_corners(run) -> list[tuple[int, int]]:
  p = run.config.data.patches
  return patches_lib.grid(run.config.image_size, run.config.image_size, p.size, p.test_stride)


def scoring_variables(run) -> dict:
  """The variables `frame_scorer`'s function takes: the run's own, and for a feature run
  its backbone's and the standardisation too."""
  if not is_feature_run(run):
    return run.variables
  f = frontend(run)
  return {'run': run.variables, 'backbone': f['backbone'], 'mean': f['mean'], 'std': f['std']}


def frame_scorer(run, forms: dict | None = None, with_patch: bool = False):
  """The pure function (variables, inputs[, offsets]) → {'score', 'pixel', 'score/<name>'}
  of a run, on raw inputs of `input_shape(run)` and `scoring_variables(run)`, its model
  built with the computation `forms` (model fields such as conv_impl that change how, not
  what, it computes; None: the run's own); `with_patch` keeps a patch model's 'patch'
  (the index of its top patch)."""
  fields = {k: v for k, v in (forms or {}).items() if hasattr(run.model, k)}
  model = run.model.clone(**fields) if fields else run.model
  score = steps_lib.scorer(model, run.method, run.image_shape)
  kind = input_kind(run.config, run.image_shape)
  corners, size = (patch_corners(run), run.config.data.patches.size) if kind == 'patches' \
      else (None, 0)
  front = frontend(run) if is_feature_run(run) else None

  def features(variables, clips):        # (B, T, S, S, C) frames → (B, T, 1, 1, D)
    b, t = clips.shape[:2]
    f = feature_cache.features_of(front['module'], variables['backbone'],
                                  clips.reshape(b * t, *clips.shape[2:]), front['pool'],
                                  front['side'])
    f = (f - variables['mean']) / variables['std']
    return f.reshape(b, t, 1, 1, f.shape[-1]), variables['run']

  def fn(variables, images, offsets=None):
    x = images
    if corners:           # (B, S, S, C) frames → (B, P, size, size, C) patch stacks
      x = jnp.stack([images[:, y:y + size, c:c + size] for y, c in corners], axis=1)
    if front:
      x, variables = features(variables, x)
    batch = {'image': x} if offsets is None else {'image': x, 'offset': offsets}
    out = score(variables, batch)
    keep = ('score', 'pixel', 'patch') if with_patch else ('score', 'pixel')
    return {k: v for k, v in out.items() if k in keep or k.startswith('score/')}
  return fn


def buckets(largest: int) -> list[int]:
  """The compiled batch sizes: powers of two below `largest`, and `largest`."""
  sizes, b = [], 1
  while b < largest:
    sizes.append(b)
    b *= 2
  return sizes + [largest]


def threshold_of(thresholds: dict, choice) -> tuple[str, float]:
  """(name, value) of a persisted threshold's name, or of a number given as text."""
  if choice in thresholds:
    return str(choice), float(thresholds[choice])
  try:
    value = float(choice)
  except (TypeError, ValueError):
    value = float('nan')
  if not np.isfinite(value):
    raise UserError(f'unknown threshold {choice!r}; this run has {", ".join(thresholds)} '
                    f'(or give a number, in the normalised score space)')
  return str(choice), value


@dataclasses.dataclass
class Scores:
  """The scores of a run of frames: raw, normalised, decided; pixel maps when kept."""
  raw: np.ndarray
  normalized: np.ndarray
  anomalous: np.ndarray
  pixel: np.ndarray | None          # (N, h, w): the frame's map (patches: its top patch's)
  corner: np.ndarray | None         # (N, 2): where a patch model's top patch sits


class Predictor:
  """A trained run, ready to score raw frames, with a threshold chosen at use time."""

  def __init__(self, run, threshold='gmean'):
    self.run = run
    self.kind = input_kind(run.config, run.image_shape)
    self.format = inputs_lib.FrameFormat(run.config, frame_shape(run)[-1])
    self.clip_length = run.image_shape[0] if self.kind == 'clip' else 1
    self.anchor = clip_anchor(run) if self.kind == 'clip' else 0
    self.threshold_name, self.threshold = threshold_of(run.thresholds, threshold)
    self.normalizer = run.normalizer
    self.buckets = buckets(run.config.eval_batch_size)
    self.corners = np.asarray(patch_corners(run)) if self.kind == 'patches' else None
    self.variables = scoring_variables(run)
    self._fn = jax.jit(frame_scorer(run, with_patch=True))

  @property
  def max_batch(self) -> int:
    return self.buckets[-1]

  def warm_up(self) -> None:
    """Compiles every bucket now, so that no request waits for XLA."""
    for b in self.buckets:
      self.score_records(np.zeros((b, *input_shape(self.run)), np.float32),
                         np.zeros(b, np.int32) if self.kind == 'clip' else None)

  def records(self, frames: np.ndarray, video: bool):
    """The records that score `frames` ((N, S, S, C); one video when `video`), indexable:
    frames, or clips with the scored frame's offset."""
    if self.kind != 'clip':
      return ArraySource(image=frames)
    if not video and self.clip_length > 1:
      raise UserError(f'this run scores clips of {self.clip_length} frames of a video; '
                      f'give a video file or a folder of frames, not single images')
    if len(frames) < self.clip_length:
      raise UserError(f'a video of {len(frames)} frames is shorter than one clip of this '
                      f'run ({self.clip_length} frames)')
    zeros = np.zeros(len(frames), np.int32)
    return ClipSource([Video(frames, zeros, zeros)], self.clip_length, per_frame=True,
                      anchor=self.anchor)

  def take(self, records, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Records start … stop − 1 as (inputs, offsets or None)."""
    rows = [records[i] for i in range(start, stop)]
    offsets = np.stack([r['offset'] for r in rows]) if self.kind == 'clip' else None
    return np.stack([r['image'] for r in rows]), offsets

  def score_records(self, x: np.ndarray, offsets=None, keep_maps: bool = True) -> dict:
    """Raw outputs of inputs (N, *input_shape), each call at the smallest bucket that holds
    it: {'score', 'pixel' (kept), 'patch' (patch models)}."""
    parts = []
    for start in range(0, len(x), self.max_batch):
      part = x[start:start + self.max_batch]
      n = len(part)
      b = next(s for s in self.buckets if s >= n)
      pad = lambda a: np.concatenate([a, np.zeros((b - n, *a.shape[1:]), a.dtype)]) \
          if b > n else a
      args = [pad(np.asarray(part, np.float32))]
      if offsets is not None:
        args.append(pad(np.asarray(offsets[start:start + n], np.int32)))
      out = jax.device_get(self._fn(self.variables, *args))
      parts.append({k: np.asarray(v)[:n] for k, v in out.items()
                    if k in ('score', 'patch') or (keep_maps and k == 'pixel')})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def score(self, frames: np.ndarray, video: bool = False, keep_maps: bool = False,
            progress: Progress | None = None) -> Scores:
    src = self.records(np.asarray(frames, np.float32), video)
    parts = []
    for start in range(0, len(src), self.max_batch):
      stop = min(start + self.max_batch, len(src))
      parts.append(self.score_records(*self.take(src, start, stop), keep_maps=keep_maps))
      if progress:
        progress.update(stop - start)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return self.decide(out['score'], out.get('pixel'), self.corner_of(out))

  def corner_of(self, out: dict) -> np.ndarray | None:
    """(N, 2): where each frame's top patch sits (patch models whose maps are kept)."""
    if self.corners is None or 'pixel' not in out:
      return None
    return self.corners[out['patch']]

  def score_video(self, frames, keep_maps: bool = False, progress: Progress | None = None):
    """Scores a video given as an iterable of prepared frames (S, S, C), in chunks of the
    run's eval batch: yields (index of the chunk's first frame, Scores) in frame order.
    Memory holds one chunk of records and the clip around it, whatever the video's
    length; the scores are those of `score` on the whole video (a clip model's frame f is
    scored by the clip `ClipSource` gives it, moved inward at the video's end)."""
    chunk = self.max_batch
    if self.kind != 'clip':
      part, first = [], 0
      for frame in frames:
        part.append(frame)
        if len(part) == chunk:
          yield first, self.score(np.stack(part), True, keep_maps, progress)
          first, part = first + len(part), []
      if part:
        yield first, self.score(np.stack(part), True, keep_maps, progress)
      return
    length, anchor = self.clip_length, self.anchor
    window, base, count, done = [], 0, 0, 0     # window[0] is frame `base`
    clips, offsets = [], []

    def flush():
      nonlocal done
      out = self.score_records(np.stack(clips), np.asarray(offsets, np.int32), keep_maps)
      if progress:
        progress.update(len(clips))
      s = self.decide(out['score'], out.get('pixel') if keep_maps else None)
      first, done = done, done + len(clips)
      clips.clear(), offsets.clear()
      return first, s

    def take(f, start):
      clips.append(np.stack(window[start - base:start - base + length]))
      offsets.append(f - start)

    for frame in frames:
      window.append(frame)
      count += 1
      f = done + len(clips)                   # the next frame to score
      while max(f - anchor, 0) + length <= count:     # its clip has arrived
        take(f, max(f - anchor, 0))
        if len(clips) == chunk:
          yield flush()
        f += 1
      # the next clip's first frame, or the last clip's if the video ends here
      keep = max(min(f - anchor, count - length), 0)
      del window[:keep - base]
      base = keep
    if count < length:
      raise UserError(f'a video of {count} frames is shorter than one clip of this run '
                      f'({length} frames)')
    for f in range(done + len(clips), count):           # the end: the last clip
      take(f, count - length)
      if len(clips) == chunk:
        yield flush()
    if clips:
      yield flush()

  def decide(self, raw, pixel=None, corner=None) -> Scores:
    normalized = self.normalizer(raw)
    return Scores(np.asarray(raw, np.float64), normalized, normalized > self.threshold,
                  pixel, corner)

  def rows(self, name: str, s: Scores, video: bool, first: int = 0) -> list[dict]:
    return [{'input': name, 'frame': first + i if video else None, 'score': float(s.raw[i]),
             'normalized': float(s.normalized[i]), 'anomalous': bool(s.anomalous[i]),
             'threshold': self.threshold_name, 'threshold_value': self.threshold}
            for i in range(len(s.raw))]


