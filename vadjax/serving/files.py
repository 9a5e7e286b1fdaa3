"""Scores files and folders with a trained run (`experiments/predict.py`): each scored
frame gives one JSON line (the input, the frame index (null for an image), the raw score,
the score normalised by the run's normaliser, the decision at the chosen threshold), and
optionally heat-map overlays: a PNG per image, an annotated MP4 per video. Videos are
decoded and scored chunk by chunk (Predictor.score_video), rows written as they come.
"""

import contextlib
import json
import os

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from vadjax.data import formats
from vadjax.progress import Progress
from vadjax.serving import inputs as inputs_lib
from vadjax.serving.predict import Predictor, Scores


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

