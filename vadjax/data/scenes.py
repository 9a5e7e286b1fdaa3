"""Few-shot scene-adaptation tasks from walkway scenes (seed 000 §2.2; METHODS.md §6).

A scene's normal video is cut into overlapping segments (I_1 .. I_t, I_t+1): x = the first t
frames, y = the next. A task T_i = (D_i^tr, D_i^val) holds K pairs each, disjoint, sampled
from one scene's training videos. Scenes 1..M are the training cameras; held-out scenes
have ids from `HELD_OUT_FIRST` on, so no training scene is ever a test scene.
"""

import dataclasses

import numpy as np

from vadjax.data import walkway
from vadjax.registry import UserError

HELD_OUT_FIRST = 1000


@dataclasses.dataclass
class SceneData:
  scene: int
  train: list              # normal videos (walkway Video)
  test: list               # labelled test videos


def load(scene: int, size: int, length: int, num_train: int, num_test: int,
         category: str = 'gray') -> SceneData:
  train, _, test = walkway.make_videos(length, num_train, 0, num_test, size, category,
                                       scene_id=scene)
  return SceneData(scene, train, test)


def segments(videos, t: int) -> np.ndarray:
  """(video, start) of every segment of t + 1 consecutive frames."""
  index = [(v, s) for v, video in enumerate(videos) for s in range(len(video.frames) - t)]
  if not index:
    raise UserError(f'no segment of {t + 1} frames fits the videos; shorten maml.frames_in '
                    f'or lengthen the videos')
  return np.asarray(index, np.int64)


def pairs(videos, index: np.ndarray, t: int) -> dict:
  """x (N, t, H, W, C) and y (N, H, W, C) of the segments at `index`."""
  x = np.stack([videos[v].frames[s:s + t] for v, s in index])
  y = np.stack([videos[v].frames[s + t] for v, s in index])
  return {'x': x, 'y': y}


def task(rng: np.random.Generator, videos, t: int, k: int) -> dict:
  """One task: K training and K disjoint validation pairs of one scene's videos."""
  index = segments(videos, t)
  if len(index) < 2 * k:
    raise UserError(f'a task needs {2 * k} segments of {t + 1} frames; the scene has '
                    f'{len(index)}. Lower maml.k or lengthen the videos')
  chosen = index[rng.choice(len(index), 2 * k, replace=False)]
  return {'train': pairs(videos, chosen[:k], t), 'val': pairs(videos, chosen[k:], t)}


def stack(tasks: list[dict]) -> dict:
  """Tasks stacked on a leading axis, for vmap."""
  return {split: {f: np.stack([tk[split][f] for tk in tasks]) for f in ('x', 'y')}
          for split in ('train', 'val')}
