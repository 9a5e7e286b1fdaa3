"""`moving_digits`: an embedded surveillance-like video built from scikit-learn's digits.

A static scene (a lit floor and two benches) with two walking lanes: digits of classes
0-4 walk left→right on the upper lane and right→left on the lower one at 1-1.5 px/frame.
Test (and validation) videos hold one anomalous event each, of four kinds:
  object     a digit of another class (7, 8, 9) walking normally (appearance anomaly)
  fast       a normal digit at 4-5 px/frame                        (motion)
  wrong_way  a normal digit walking against its lane's direction   (motion)
  loiter     a normal digit that stops for 20-40 frames            (motion)
A frame is anomalous while the event's digit is visible and behaving anomalously; masks are
its pixels then. Three of the four kinds are invisible in a single frame, so a per-frame
model cannot see them. Deterministic: the scene depends only on `SPLIT_SEED` and the config.
Frames are 64×64 grey, resized to `image_size`.
"""

import functools

import numpy as np
import skimage.transform

from vadjax.data.sources import DATASETS, Splits, register_categories
from vadjax.data.video import ClipSource, Video, walker_x
from vadjax.registry import UserError

SPLIT_SEED = 1234
SIZE, SPRITE = 64, 16
LANES = ((14, +1), (38, -1))          # (top row, direction)
NORMAL_CLASSES, ODD_CLASSES = (0, 1, 2, 3, 4), (7, 8, 9)
KINDS = ['normal', 'object', 'fast', 'wrong_way', 'loiter']


@functools.lru_cache(maxsize=1)
def _sprites():
  from sklearn.datasets import load_digits  # bundled with scikit-learn
  d = load_digits()
  sprites = np.stack([skimage.transform.resize(im / 16.0, (SPRITE, SPRITE), order=1)
                      for im in d.images]).astype(np.float32)
  return np.clip(sprites, 0, 1), d.target


def _background():
  yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
  bg = 0.75 + 0.15 * xx - 0.1 * yy
  bg[30:34, 6:22] = 0.45              # benches between the lanes
  bg[30:34, 40:58] = 0.45
  bg[58:, :] -= 0.1                   # a kerb
  return bg.astype(np.float32)


def _walker(rng, sprites, targets, classes, lane, t0, speed, direction=None):
  """A walker: sprite, row, x(t) over frames, entering from its side of the lane."""
  idx = rng.choice(np.flatnonzero(np.isin(targets, classes)))
  row, lane_dir = LANES[lane]
  d = lane_dir if direction is None else direction
  x0 = -SPRITE if d > 0 else SIZE
  return {'sprite': sprites[idx], 'row': row + int(rng.integers(-2, 3)), 't0': t0,
          'x0': float(x0), 'v': d * speed, 'stop': None, 'anomalous': None}


def _render(walkers, length, rng):
  bg = _background()
  frames = np.repeat(bg[None], length, axis=0)
  labels = np.zeros(length, np.int32)
  kinds = np.zeros(length, np.int32)
  masks = np.zeros((length, SIZE, SIZE), np.float32)
  for t in range(length):
    for w in walkers:
      if t < w['t0']:
        continue
      x = int(round(walker_x(w, t)))
      if x <= -SPRITE or x >= SIZE:
        continue
      lo, hi = max(x, 0), min(x + SPRITE, SIZE)
      sp = w['sprite'][:, lo - x:hi - x]
      region = frames[t, w['row']:w['row'] + SPRITE, lo:hi]
      region *= 1 - 0.85 * sp          # dark ink on the floor
      kind, window = w['anomalous'] or (0, None)
      ink = sp > 0.25                  # a frame is anomalous once the event's ink shows
      if kind and window[0] <= t < window[1] and ink.any():
        labels[t], kinds[t] = 1, kind
        masks[t, w['row']:w['row'] + SPRITE, lo:hi] = np.maximum(
            masks[t, w['row']:w['row'] + SPRITE, lo:hi], ink.astype(np.float32))
  frames += rng.normal(0, 0.01, frames.shape).astype(np.float32)   # sensor noise
  return np.clip(frames, 0, 1), labels, kinds, masks


def _video(rng, length, kind: int, name: str) -> Video:
  sprites, targets = _sprites()
  walkers = []
  for lane in range(2):               # normal traffic: a walker every 20-40 frames per lane
    t = int(rng.integers(-60, 0))
    while t < length:
      walkers.append(_walker(rng, sprites, targets, NORMAL_CLASSES, lane, t,
                             rng.uniform(1.0, 1.5)))
      t += int(rng.integers(20, 41))
  if kind:
    lane, t0 = int(rng.integers(2)), int(rng.integers(length // 5, length // 2))
    classes = ODD_CLASSES if KINDS[kind] == 'object' else NORMAL_CLASSES
    speed = rng.uniform(4.0, 5.0) if KINDS[kind] == 'fast' else rng.uniform(1.0, 1.5)
    direction = -LANES[lane][1] if KINDS[kind] == 'wrong_way' else None
    w = _walker(rng, sprites, targets, classes, lane, t0, speed, direction)
    w['row'] = LANES[lane][0] + (2 if lane == 0 else -2)   # beside the traffic, in the lane
    crossing = int((SIZE + SPRITE) / speed) + 1
    window = (t0, t0 + crossing)
    if KINDS[kind] == 'loiter':
      s0 = t0 + int((SIZE / 2) / speed)                    # stops mid-scene
      w['stop'] = (s0, s0 + int(rng.integers(20, 41)))
      window = w['stop']
    w['anomalous'] = (kind, window)
    walkers.append(w)
  frames, labels, kinds, masks = _render(walkers, length, rng)
  return Video(frames[..., None], labels, kinds, masks, name)


def _resize_video(v: Video, size: int) -> Video:
  if size == SIZE:
    return v
  f = np.stack([skimage.transform.resize(x, (size, size), order=1) for x in v.frames])
  m = np.stack([skimage.transform.resize(x, (size, size), order=0) for x in v.masks])
  return Video(f.astype(np.float32), v.labels, v.kinds, m.astype(np.float32), v.name)


@functools.lru_cache(maxsize=4)
def make_videos(length: int, num_train: int, num_val: int, num_test: int, size: int):
  """(train, val, test) lists of videos; anomalous kinds cycle over the four kinds."""
  rng = np.random.default_rng(SPLIT_SEED)
  train = [_video(rng, length, 0, f'train{i}') for i in range(num_train)]
  val = [_video(rng, length, 1 + i % 4, f'val{i}') for i in range(num_val)]
  test = [_video(rng, length, 1 + i % 4, f'test{i}') for i in range(num_test)]
  return tuple([_resize_video(v, size) for v in vs] for vs in (train, val, test))


@DATASETS.register('moving_digits')
def build_moving_digits(category: str, image_size: int, data_cfg) -> Splits:
  if category != 'scene':
    raise UserError(f'moving_digits has one category, scene; got {category!r}')
  v = data_cfg.video
  length = v.clip_length
  train, val, test = make_videos(v.length, v.num_train, v.num_val, v.num_test, image_size)
  return Splits(ClipSource(train, length, v.clip_strides),
                ClipSource(val, length, per_frame=True), ClipSource(test, length, per_frame=True),
                kind_names=list(KINDS), has_masks=True,
                image_shape=(length, image_size, image_size, 1))


register_categories('moving_digits', lambda: ['scene'])
