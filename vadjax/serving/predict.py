"""Scores new images, folders and videos with a trained run (`experiments/predict.py`).

Each scored frame gives one JSON line: the input, the frame index (null for an image), the
raw score, the score normalised by the run's normaliser (fitted on normal training and
validation scores, vadjax/eval/thresholds.py) and the decision `normalized > threshold`,
with the threshold chosen at use time: any threshold the run persisted, by name, or a
number in the normalised space. The threshold changes the decisions and nothing else.

Frames are scored as evaluation scores the test split (vadjax/train/evaluate.py): clip
models (video) score frame f with the stride-1 clip that has f at its centre, moved
inward at a video's ends (vadjax/data/video.py); patch models score a frame by its worst
patch on the `data.patches.test_stride` grid; image models score each frame on its own.
`frame_scorer` is the same scoring as one pure function of frames (patches cut inside it),
for export and streaming.
"""

import contextlib
import dataclasses
import json
import os

import jax.numpy as jnp
import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from vadjax.data import formats
from vadjax.data import patches as patches_lib
from vadjax.data.sources import ArraySource, Subset
from vadjax.data.video import ClipSource, Video
from vadjax.progress import Progress
from vadjax.registry import UserError
from vadjax.serving import inputs as inputs_lib
from vadjax.train import steps as steps_lib


def input_kind(config, image_shape) -> str:
  """'clip' (the model sees clips), 'patches' (frames scored by their patches) or 'image'."""
  if len(image_shape) == 4:
    return 'clip'
  return 'patches' if config.data.patches.size > 0 else 'image'


def input_shape(run) -> tuple:
  """The shape of one input of the exported graph (no batch dimension)."""
  if input_kind(run.config, run.image_shape) == 'patches':
    s = run.config.image_size
    return (s, s, run.image_shape[-1])
  return tuple(run.image_shape)


def patch_corners(run) -> list[tuple[int, int]]:
  p = run.config.data.patches
  return patches_lib.grid(run.config.image_size, run.config.image_size, p.size, p.test_stride)


def frame_scorer(run, forms: dict | None = None, with_patch: bool = False):
  """The pure function (variables, inputs[, offsets]) → {'score', 'pixel', 'score/<name>'}
  of a run, on inputs of `input_shape(run)`, its model built with the computation `forms`
  (model fields such as conv_impl that change how, not what, it computes; None: the
  run's own); `with_patch` keeps a patch model's 'patch' (the index of its top patch)."""
  fields = {k: v for k, v in (forms or {}).items() if hasattr(run.model, k)}
  model = run.model.clone(**fields) if fields else run.model
  score = steps_lib.scorer(model, run.method, run.image_shape)
  kind = input_kind(run.config, run.image_shape)
  corners, size = (patch_corners(run), run.config.data.patches.size) if kind == 'patches' \
      else (None, 0)

  def fn(variables, images, offsets=None):
    x = images
    if corners:           # (B, S, S, C) frames → (B, P, size, size, C) patch stacks
      x = jnp.stack([images[:, y:y + size, c:c + size] for y, c in corners], axis=1)
    batch = {'image': x} if offsets is None else {'image': x, 'offset': offsets}
    out = score(variables, batch)
    keep = ('score', 'pixel', 'patch') if with_patch else ('score', 'pixel')
    return {k: v for k, v in out.items() if k in keep or k.startswith('score/')}
  return fn


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
  """A trained run, ready to score frames, with a threshold chosen at use time."""

  def __init__(self, run, threshold='gmean'):
    if run.config.method == 'feature_prediction':
      raise UserError('this run predicts frozen backbone features (seed 004); serving it on '
                      'frames is not built: score its feature clips with '
                      'vadjax.train.restore(workdir).score')
    self.run = run
    self.kind = input_kind(run.config, run.image_shape)
    self.format = inputs_lib.FrameFormat(run.config, run.image_shape[-1])
    self.clip_length = run.image_shape[0] if self.kind == 'clip' else 1
    self.threshold_name, self.threshold = threshold_of(run.thresholds, threshold)
    self.normalizer = run.normalizer

  def source(self, frames: np.ndarray, video: bool):
    """The records that score `frames` ((N, S, S, C); one video when `video`)."""
    if self.kind == 'clip':
      if not video and self.clip_length > 1:
        raise UserError(f'this run scores clips of {self.clip_length} frames of a video; '
                        f'give a video file or a folder of frames, not single images')
      if len(frames) < self.clip_length:
        raise UserError(f'a video of {len(frames)} frames is shorter than one clip of this '
                        f'run ({self.clip_length} frames)')
    if self.kind == 'image':
      return ArraySource(image=frames)
    zeros = np.zeros(len(frames), np.int32)
    v = Video(frames, zeros, zeros)
    if self.kind == 'patches':
      p = self.run.config.data.patches
      return patches_lib.PatchStacks([v], p.size, p.test_stride)
    return ClipSource([v], self.clip_length, per_frame=True)

  def score(self, frames: np.ndarray, video: bool = False, keep_maps: bool = False,
            progress: Progress | None = None) -> Scores:
    src = self.source(np.asarray(frames, np.float32), video)
    chunk, parts = self.run.config.eval_batch_size, []
    for start in range(0, len(src), chunk):
      part = self.run.score_source(Subset(src, np.arange(start, min(start + chunk, len(src)))))
      parts.append({k: v for k, v in part.items()
                    if k in ('score', 'patch') or (keep_maps and k == 'pixel')})
      if progress:
        progress.update(len(part['score']))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    corner = (np.asarray(src.corners)[out['patch']] if 'patch' in out and keep_maps else None)
    return self.decide(out['score'], out.get('pixel'), corner)

  def score_video(self, frames, keep_maps: bool = False, progress: Progress | None = None):
    """Scores a video given as an iterable of prepared frames (S, S, C), in chunks of the
    run's eval batch: yields (index of the chunk's first frame, Scores) in frame order.
    Memory holds one chunk of records and the clip around it, whatever the video's
    length; the scores are those of `score` on the whole video (a clip model's frame f is
    scored by the clip `ClipSource` gives it, moved inward at the video's end)."""
    chunk = self.run.config.eval_batch_size
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
    length, anchor = self.clip_length, self.clip_length // 2
    window, base, count, done = [], 0, 0, 0     # window[0] is frame `base`
    clips, offsets = [], []

    def flush():
      nonlocal done
      src = ArraySource(image=np.stack(clips), offset=np.asarray(offsets, np.int32))
      out = self.run.score_source(src)
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


def predict(predictor: Predictor, path: str, out, overlays: str = '',
            progress: bool = True) -> dict:
  """Scores everything at `path`, writing JSON lines to the open text file `out` and, with
  `overlays` (a folder), heat-map overlays: a PNG per image, an annotated MP4 per video.
  Returns counts."""
  items = inputs_lib.find(path, sequences=predictor.kind == 'clip')
  singles = [it for it in items if not it.sequence]
  videos = [it for it in items if it.sequence]
  if overlays:
    os.makedirs(overlays, exist_ok=True)
  counts = {'inputs': len(items), 'frames': 0, 'anomalous': 0}
  bar = Progress(os.path.basename(path.rstrip('/')) or path, len(singles), progress)
  batch = predictor.run.config.eval_batch_size
  for start in range(0, len(singles), batch):
    group = singles[start:start + batch]
    frames = np.concatenate([predictor.format.load(it) for it in group])
    s = predictor.score(frames, keep_maps=bool(overlays), progress=bar)
    rows = predictor.rows('', s, video=False)
    for it, row in zip(group, rows):
      row['input'] = it.name
    _emit(out, rows, counts)
    if overlays:
      scale = _map_scale(s.pixel)
      for i, it in enumerate(group):
        Image.fromarray(annotate(frames[i], s, i, scale)).save(
            os.path.join(overlays, _overlay_name(it.name, path) + '.png'))
  for it in videos:
    _predict_video(predictor, it, path, out, overlays, counts, progress)
  return counts


def _predict_video(predictor: Predictor, it, root: str, out, overlays: str, counts: dict,
                   progress: bool) -> None:
  """Scores one video chunk by chunk, writing its rows as they come. Overlays share one
  colour scale (the video's largest map value), known only at the end: the maps go to a
  temporary file beside the overlays, and a second decoding pass draws the MP4."""
  fmt = predictor.format
  bar = Progress(os.path.basename(it.name.rstrip('/')), fmt.length(it), progress)
  maps_path = os.path.join(overlays, f'.{_overlay_name(it.name, root)}.maps') if overlays else ''
  decided, corners, maps = [], [], None
  try:
    with open(maps_path, 'wb') if overlays else contextlib.nullcontext() as f:
      for first, s in predictor.score_video(fmt.frames(it), bool(overlays), bar):
        _emit(out, predictor.rows(it.name, s, video=True, first=first), counts)
        if overlays:
          decided.append(np.stack([s.normalized, s.anomalous]))
          corners += [] if s.corner is None else list(s.corner)
          if s.pixel is not None:
            f.write(np.ascontiguousarray(s.pixel, np.float32).tobytes())
            maps = _MapsFile(maps_path, s.pixel.shape[1:], max(
                maps.scale if maps else -np.inf, _map_scale(s.pixel)))
    bar.close()
    if overlays:
      normalized, anomalous = np.concatenate(decided, axis=1)
      s = Scores(None, normalized, anomalous.astype(bool), maps,
                 np.asarray(corners) if corners else None)
      frames = (annotate(x, s, i, maps.scale if maps else 1.0)
                for i, x in enumerate(fmt.frames(it)))
      formats.write_video(os.path.join(overlays, _overlay_name(it.name, root) + '.mp4'), frames)
  finally:
    if maps_path and os.path.exists(maps_path):
      os.remove(maps_path)


class _MapsFile:
  """A video's pixel maps in a raw float32 file, read one at a time (positioned reads: the
  file is never mapped, so memory stays one map)."""

  def __init__(self, path: str, shape: tuple, scale: float):
    self.path, self.shape, self.scale = path, tuple(shape), scale
    self.bytes = int(np.prod(shape)) * 4

  def __getitem__(self, i: int) -> np.ndarray:
    with open(self.path, 'rb') as f:
      data = os.pread(f.fileno(), self.bytes, i * self.bytes)
    return np.frombuffer(data, np.float32).reshape(self.shape)


def _emit(out, rows, counts) -> None:
  for r in rows:
    out.write(json.dumps(r) + '\n')
    counts['frames'] += 1
    counts['anomalous'] += int(r['anomalous'])
  out.flush()


def _overlay_name(name: str, root: str) -> str:
  rel = os.path.relpath(name, root) if name != root else os.path.basename(name.rstrip('/'))
  return os.path.splitext(rel.replace(os.sep, '__'))[0] or 'input'


def _map_scale(pixel) -> float:
  """One colour scale for the maps of a video or of a batch of images: their largest."""
  return float(np.max(pixel)) if pixel is not None and pixel.size else 1.0


def annotate(frame: np.ndarray, s: Scores, i: int, scale: float) -> np.ndarray:
  """uint8 RGB: the frame beside its heat-map overlay (where the method makes maps), a red
  (anomalous) or green frame border and the normalised score; drawn at ≥ 128 px high."""
  rgb = np.repeat(frame, 3, -1) if frame.shape[-1] == 1 else frame
  panels = [rgb]
  if s.pixel is not None:
    heat = np.zeros(frame.shape[:2], np.float32)
    m = s.pixel[i] / max(scale, 1e-12)
    y, x = s.corner[i] if s.corner is not None else (0, 0)
    heat[y:y + m.shape[0], x:x + m.shape[1]] = m
    colour = colormaps['jet'](np.clip(heat, 0, 1))[..., :3]
    panels.append(0.5 * rgb + 0.5 * colour)
  im = Image.fromarray((np.clip(np.concatenate(panels, 1), 0, 1) * 255).astype(np.uint8))
  zoom = max(1, -(-128 // im.height))
  im = im.resize((im.width * zoom, im.height * zoom), Image.NEAREST)
  draw = ImageDraw.Draw(im)
  colour = (230, 30, 30) if s.anomalous[i] else (30, 200, 30)
  draw.rectangle([0, 0, im.width - 1, im.height - 1], outline=colour, width=3)
  draw.text((6, 4), f'{s.normalized[i]:.3f}', fill=colour)
  out = np.asarray(im)
  return out[:out.shape[0] // 2 * 2, :out.shape[1] // 2 * 2]    # H.264 wants even sides

