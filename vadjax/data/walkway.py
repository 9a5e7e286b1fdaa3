"""`walkway`: an embedded UCSD-Ped2-like surveillance scene (no download; deterministic).

A fixed camera over a one-way paved walkway crossing a lawn, with a lamp post and a bench.
People (head, coloured shirt, dark trousers, legs that swing as they walk) walk left → right
along two lanes at 1.0–1.6 px/frame (`data.video.walk_speed`), one every 25–50 frames per lane.
(One direction for both lanes: with a direction per lane, telling a wrong-way walker needs
absolute position, which translation-equivariant conv models hardly have.) Test and
validation videos hold one anomalous event each, of four kinds (cycled over the videos):
  object     a hand cart pushed at walking speed (another kind of object: appearance)
  fast       a person running at 4–5 px/frame                                   (motion)
  wrong_way  a person walking right → left, against the flow                   (motion)
  loiter     a person who stops mid-scene for 25–45 frames                     (motion)
People are drawn from the front, the walk cycle is symmetric and each walker has its own
stride phase, so a single frame shows neither direction nor speed: three of the four kinds
need motion to be seen. The event's figure takes a normal walker's place and entry frame,
so the number of people in view does not tell it either. A frame is anomalous while the
event's figure is visible and behaving anomalously; the masks are its pixels then.
`category` 'gray' (luminance, 1 channel, as UCSD) or 'color' (3 channels). Frames are
rendered at 64×64 and resized to `image_size`. Everything depends only on `SPLIT_SEED` and
the config.

Scenes (few-shot scene adaptation, seed 000 §2.2): `scene` > 0 is another camera, drawn
deterministically from the scene id: lawn and paving colours, the walkway's position, the
direction of the flow, the walking-speed range, the camera's scale (people's size) and its
contrast and brightness. Scene 0 is the default walkway above, unchanged.
"""

import dataclasses
import functools

import numpy as np
import skimage.transform

from vadjax.data.sources import DATASETS, Splits, register_categories
from vadjax.data.video import ClipSource, Video, walker_x
from vadjax.registry import UserError

SPLIT_SEED = 2021
SIZE = 64
LANES = ((22, +1), (36, +1))           # (row of the feet, direction)
KINDS = ['normal', 'object', 'fast', 'wrong_way', 'loiter']
CATEGORIES = ('gray', 'color')
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class Scene:
  """What one camera sees; the defaults are scene 0, the default walkway."""
  lawn: tuple = (0.30, 0.55, 0.25)
  paving: tuple = (0.62, 0.60, 0.56)
  shift: int = 0               # the walkway and its lanes moved down (+) or up (−), px
  direction: int = +1          # the flow: +1 left → right, −1 right → left
  zoom: float = 1.0            # camera scale: the central 64/zoom px shown at 64
  contrast: float = 1.0
  brightness: float = 0.0
  speed: tuple | None = None   # normal walking speeds; None: data.video.walk_speed


def scene(scene_id: int) -> Scene:
  """The scene of a camera id, the same on every machine; 0 is the default walkway."""
  if scene_id < 0:
    raise UserError(f'walkway scene ids are >= 0, got {scene_id}')
  if scene_id == 0:
    return Scene()
  rng = np.random.default_rng((SPLIT_SEED, scene_id))
  grey = rng.uniform(0.45, 0.75)
  slow = rng.uniform(0.8, 1.5)
  return Scene(lawn=tuple(float(v) for v in rng.uniform((0.15, 0.3, 0.1), (0.5, 0.7, 0.4))),
               paving=tuple(float(grey + v) for v in rng.uniform(-0.04, 0.04, 3)),
               shift=int(rng.integers(-6, 7)), direction=int(rng.choice((-1, 1))),
               zoom=float(rng.uniform(1.0, 1.5)), contrast=float(rng.uniform(0.6, 1.2)),
               brightness=float(rng.uniform(-0.12, 0.12)),
               speed=(float(slow), float(slow + rng.uniform(0.2, 0.6))))


@functools.lru_cache(maxsize=16)
def background(view: Scene = Scene()) -> np.ndarray:
  """The static scene (64, 64, 3): lawn, walkway with paving joints, a lamp post, a bench."""
  rng = np.random.default_rng(7)
  top, bottom = 10 + view.shift, 42 + view.shift
  bg = np.empty((SIZE, SIZE, 3), np.float32)
  bg[:] = view.lawn                                             # lawn
  bg += rng.normal(0, 0.03, bg.shape).astype(np.float32)        # grass texture
  bg[top:bottom] = view.paving                                  # walkway
  bg[top:bottom, ::8] -= 0.08                                   # paving joints
  bg[[top, top + 16, bottom - 1]] -= 0.08
  bg[44:60, 50:52] = (0.2, 0.2, 0.22)                           # lamp post
  bg[42:45, 48:54] = (0.9, 0.85, 0.5)
  bg[50:53, 8:26] = (0.45, 0.30, 0.18)                          # bench
  bg[53:56, 9:11] = bg[53:56, 23:25] = (0.3, 0.2, 0.12)
  return np.clip(bg, 0, 1)


def _person(phase: float, shirt) -> tuple[np.ndarray, np.ndarray]:
  """A 14×7 figure seen from the front: (rgb, alpha). `phase` drives the legs' swing."""
  h, w = 14, 7
  rgb, alpha = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
  yy, xx = np.mgrid[:h, :w]
  head = (yy - 1.5) ** 2 + (xx - 3) ** 2 <= 2.3
  rgb[head], alpha[head] = (0.85, 0.7, 0.55), 1
  rgb[3:8, 1:6], alpha[3:8, 1:6] = shirt, 1                     # shirt and arms
  spread = int(round(1.5 + 1.5 * np.sin(phase)))                # 0..3: symmetric swing
  for leg in (3 - spread // 2 - 1, 3 + (spread + 1) // 2):
    x = int(np.clip(leg, 0, w - 1))
    rgb[8:14, x], alpha[8:14, x] = (0.15, 0.15, 0.25), 1
  return rgb, alpha


def _cart(_phase: float, _shirt) -> tuple[np.ndarray, np.ndarray]:
  """A 10×12 hand cart: a box on two wheels, with its pusher's handle."""
  h, w = 10, 12
  rgb, alpha = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
  rgb[2:7, 1:11], alpha[2:7, 1:11] = (0.55, 0.35, 0.15), 1
  rgb[0:2, 0], alpha[0:2, 0] = (0.1, 0.1, 0.1), 1
  yy, xx = np.mgrid[:h, :w]
  for cx in (3, 8):
    wheel = (yy - 8) ** 2 + (xx - cx) ** 2 <= 2.5
    rgb[wheel], alpha[wheel] = (0.1, 0.1, 0.1), 1
  return rgb, alpha


def _walker(rng, lane, t0, speed, direction=None, draw=_person, view: Scene = Scene()):
  row, lane_dir = LANES[lane]
  d = lane_dir * view.direction if direction is None else direction
  return {'draw': draw, 'shirt': rng.uniform(0.1, 0.95, 3).astype(np.float32),
          'feet': row + view.shift + int(rng.integers(-2, 3)), 't0': t0, 'x0': -8.0 if d > 0 else SIZE + 1.0,
          'v': d * speed, 'stop': None, 'anomalous': None, 'lane': lane,
          # a random stride phase, so that the pose at a place tells neither the direction
          # nor where the figure entered
          'phase': rng.uniform(0, 2 * np.pi)}


def _render(walkers, length, rng, view: Scene = Scene()):
  frames = np.repeat(background(view)[None], length, axis=0)
  labels, kinds = np.zeros(length, np.int32), np.zeros(length, np.int32)
  masks = np.zeros((length, SIZE, SIZE), np.float32)
  for t in range(length):
    # far lane first, so nearer figures occlude
    for w in sorted((w for w in walkers if t >= w['t0']), key=lambda w: w['feet']):
      x = walker_x(w, t)
      # the legs move with the feet
      rgb, alpha = w['draw'](0.6 * abs(x - w['x0']) + w['phase'], w['shirt'])
      h, wd = alpha.shape
      x0, y0 = int(round(x)), w['feet'] - h
      lo, hi = max(x0, 0), min(x0 + wd, SIZE)
      if lo >= hi:
        continue
      a = alpha[:, lo - x0:hi - x0, None]
      region = frames[t, y0:y0 + h, lo:hi]
      region[:] = region * (1 - a) + rgb[:, lo - x0:hi - x0] * a
      kind, window = w['anomalous'] or (0, None)
      if kind and window[0] <= t < window[1] and a.any():    # visible, not just in frame
        labels[t], kinds[t] = 1, kind
        masks[t, y0:y0 + h, lo:hi] = np.maximum(masks[t, y0:y0 + h, lo:hi], a[..., 0])
  frames += rng.normal(0, 0.01, frames.shape).astype(np.float32)   # sensor noise
  frames, masks = _camera(frames, masks, view)
  return np.clip(frames, 0, 1), labels, kinds, masks


def _camera(frames, masks, view: Scene):
  """The scene's camera: scale (a central crop shown at full size), contrast, brightness."""
  if view.zoom != 1.0:
    side = int(round(SIZE / view.zoom))
    a = (SIZE - side) // 2
    crop = lambda x, order: skimage.transform.resize(x[a:a + side, a:a + side], x.shape,
                                                     order=order)
    frames = np.stack([crop(f, 1) for f in frames]).astype(np.float32)
    masks = np.stack([crop(m, 0) for m in masks]).astype(np.float32)
  if view.contrast != 1.0 or view.brightness:
    mean = frames.mean()
    frames = (mean + view.contrast * (frames - mean) + view.brightness).astype(np.float32)
  return frames, masks


def _traffic(rng, length: int, speed, view: Scene = Scene()) -> list:
  """The normal walkers of a video: each lane gets one every 25–50 frames."""
  walkers = []
  for lane in range(2):
    t = int(rng.integers(-70, 0))
    while t < length:
      walkers.append(_walker(rng, lane, t, rng.uniform(*speed), view=view))
      t += int(rng.integers(25, 51))
  return walkers


def _add_event(rng, walkers: list, length: int, kind: int, speed,
               view: Scene = Scene()) -> None:
  """Turns the lane's first walker entering after a random time into the anomalous
  figure: same lane, same entry frame. So every frame has the number of figures the normal
  traffic would have, and a per-frame model cannot find the event by counting people."""
  event = KINDS[kind]
  lane, start = int(rng.integers(2)), int(rng.integers(length // 6, length // 3))
  later = [i for i, n in enumerate(walkers) if n['lane'] == lane and n['t0'] >= start]
  t0 = walkers.pop(min(later, key=lambda i: walkers[i]['t0']))['t0'] if later else start
  v = rng.uniform(4.0, 5.0) if event == 'fast' else rng.uniform(*speed)
  w = _walker(rng, lane, t0, v, -LANES[lane][1] * view.direction if event == 'wrong_way'
              else None, _cart if event == 'object' else _person, view)
  window = (t0, t0 + int((SIZE + 12) / v) + 1)                  # while crossing
  if event == 'loiter':
    s0 = t0 + int((SIZE / 2) / v)                               # stops mid-scene
    w['stop'] = (s0, s0 + int(rng.integers(25, 46)))
    window = w['stop']
  w['anomalous'] = (kind, window)
  walkers.append(w)


def _video(rng, length: int, kind: int, name: str, speed=(1.0, 1.6),
           view: Scene = Scene()) -> Video:
  walkers = _traffic(rng, length, speed, view)
  if kind:
    _add_event(rng, walkers, length, kind, speed, view)
  frames, labels, kinds, masks = _render(walkers, length, rng, view)
  return Video(frames, labels, kinds, masks, name)


def _convert(v: Video, size: int, category: str) -> Video:
  frames = v.frames
  if category == 'gray':
    frames = (frames @ _LUMA)[..., None]
  masks = v.masks
  if size != SIZE:
    frames = np.stack([skimage.transform.resize(f, (size, size), order=1) for f in frames])
    masks = np.stack([skimage.transform.resize(m, (size, size), order=0) for m in masks])
  return Video(frames.astype(np.float32), v.labels, v.kinds, masks.astype(np.float32),
               v.name)


@functools.lru_cache(maxsize=4)
def _make_videos(length, num_train, num_val, num_test, speed=(1.0, 1.6), scene_id=0):
  view = scene(scene_id)
  rng = np.random.default_rng(SPLIT_SEED if scene_id == 0 else (SPLIT_SEED, scene_id, 1))
  speed = view.speed or speed
  train = [_video(rng, length, 0, f'train{i}', speed, view) for i in range(num_train)]
  val = [_video(rng, length, 1 + i % 4, f'val{i}', speed, view) for i in range(num_val)]
  test = [_video(rng, length, 1 + i % 4, f'test{i}', speed, view) for i in range(num_test)]
  return train, val, test


def make_videos(length: int, num_train: int, num_val: int, num_test: int, size: int,
                category: str = 'gray', speed=(1.0, 1.6), scene_id: int = 0):
  """(train, val, test) lists of videos of camera `scene_id` (0: the default walkway);
  anomalous kinds cycle over the four kinds; normal walkers (and the non-running events)
  walk at `speed` = (min, max) px/frame, or at the scene's own speeds (scene > 0)."""
  if category not in CATEGORIES:
    raise UserError(f'walkway categories are {CATEGORIES}, got {category!r}')
  lo, hi = (float(v) for v in speed)
  if not 0 < lo <= hi < 4.0:
    raise UserError(f'data.video.walk_speed must be (min, max) px/frame with 0 < min <= max < 4 '
                    f'(runners, at 4–5, stay anomalous); got {tuple(speed)}')
  return tuple([_convert(v, size, category) for v in vs]
               for vs in _make_videos(length, num_train, num_val, num_test, (lo, hi),
                                      int(scene_id)))


@DATASETS.register('walkway')
def build_walkway(category: str, image_size: int, data_cfg) -> Splits:
  v = data_cfg.video
  train, val, test = make_videos(v.length, v.num_train, v.num_val, v.num_test, image_size,
                                 category, v.walk_speed)
  length, channels = v.clip_length, train[0].frames.shape[-1]
  return Splits(ClipSource(train, length, v.clip_strides),
                ClipSource(val, length, per_frame=True), ClipSource(test, length, per_frame=True),
                kind_names=list(KINDS), has_masks=True,
                image_shape=(length, image_size, image_size, channels))


register_categories('walkway', lambda: list(CATEGORIES))
