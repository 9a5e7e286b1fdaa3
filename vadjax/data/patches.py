"""The patch protocol for video frames (METHODS.md §0; seed 002 §3.4.2 and §4.4.2, after
"Old is Gold"): image models see square patches of single frames.

  training    patches of the (normal) training frames on a grid of `stride`; with
              `min_change` > 0 only those whose mean absolute change from the previous
              frame reaches it (the thesis trains on patches that hold pedestrians: moving
              content, not the empty background)
  scoring     one record per frame: all its patches on a grid of `test_stride`, stacked
              (P, size, size, C); the train step scores every patch and the frame's score is
              the max (vadjax.train.steps). Labels, kinds, `video` and `frame` are the frame's.

The thesis says 30×30 patches; ALOCC/OGNet's code uses 45×45 with stride 25 (train) / 10
(test). All three numbers are config keys (`data.patches.size`, ...). Pixel masks are not
carried (a frame's map would be stitched from patches).
"""

import numpy as np

from vadjax.data.sources import Splits
from vadjax.data.video import frame_field
from vadjax.registry import UserError


def grid(height: int, width: int, size: int, stride: int) -> list[tuple[int, int]]:
  """Top-left corners of size×size patches every `stride` pixels, the last row and column
  moved in to end at the border so that every pixel is covered."""
  def starts(n):
    s = list(range(0, n - size + 1, stride))
    return s if s[-1] == n - size else s + [n - size]
  return [(y, x) for y in starts(height) for x in starts(width)]


def _change(frames: np.ndarray) -> np.ndarray:
  """Per-pixel |f_t − f_{t−1}| averaged over channels (frame 0 against frame 1)."""
  d = np.abs(np.diff(frames, axis=0)).mean(-1)
  return np.concatenate([d[:1], d])


class TrainPatches:
  """Random-access patches of the frames of normal videos."""

  def __init__(self, videos, size: int, stride: int, min_change: float = 0.0):
    self.videos, self.size = videos, size
    index = []
    for vi, v in enumerate(videos):
      change = _change(v.frames)
      for t in range(len(v.frames)):
        for y, x in grid(*v.frames.shape[1:3], size, stride):
          if change[t, y:y + size, x:x + size].mean() >= min_change:
            index.append((vi, t, y, x))
    if not index:
      raise UserError(f'no training patch of {size}×{size} changes by at least '
                      f'{min_change} between frames; lower data.patches.min_change')
    self.index = np.asarray(index, np.int64)

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    vi, t, y, x = (int(a) for a in self.index[i])
    return {'image': self.videos[vi].frames[t, y:y + self.size, x:x + self.size]}


class PatchStacks:
  """One record per frame of the videos: its patches stacked, and the frame's labels."""

  def __init__(self, videos, size: int, stride: int):
    self.videos, self.size = videos, size
    self.corners = grid(*videos[0].frames.shape[1:3], size, stride)
    self.index = np.asarray([(vi, t) for vi, v in enumerate(videos)
                             for t in range(len(v.frames))], np.int64)

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    vi, t = (int(a) for a in self.index[i])
    v, s = self.videos[vi], self.size
    stack = np.stack([v.frames[t, y:y + s, x:x + s] for y, x in self.corners])
    return {'image': stack, 'label': v.labels[t], 'kind': v.kinds[t],
            'video': np.int32(vi), 'frame': np.int32(t)}

  def array(self, name: str) -> np.ndarray:
    vi, t = self.index[:, 0], self.index[:, 1]
    if name == 'video':
      return vi.astype(np.int32)
    if name == 'frame':
      return t.astype(np.int32)
    if name in ('label', 'kind'):
      return frame_field(self.videos, vi, t, name)
    return np.stack([self[i][name] for i in range(len(self))])


def patch_splits(splits: Splits, dataset: str, size: int, stride: int, test_stride: int,
                 min_change: float = 0.0) -> Splits:
  """A video dataset's splits under the patch protocol."""
  sources = (splits.train, splits.val, splits.test)
  if not all(hasattr(s, 'videos') for s in sources):
    raise UserError(f'the patch protocol (data.patches.size > 0) needs a video dataset; '
                    f'{dataset!r} is not one. Set data.patches.size=0')
  h, w, c = splits.train.videos[0].frames.shape[1:]
  if not 0 < size <= min(h, w) or stride < 1 or test_stride < 1:
    raise UserError(f'data.patches.size must be in 1..{min(h, w)} (the frames are {h}×{w}) and '
                    f'the strides >= 1; got size {size}, strides {stride}, {test_stride}')
  return Splits(TrainPatches(splits.train.videos, size, stride, min_change),
                PatchStacks(splits.val.videos, size, test_stride),
                PatchStacks(splits.test.videos, size, test_stride),
                kind_names=splits.kind_names, has_masks=False, image_shape=(size, size, c))
