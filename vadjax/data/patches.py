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

import dataclasses

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


def _changes(frames, batch: int = 64):
  """Per frame t, the per-pixel |f_t − f_{t−1}| averaged over channels (frame 0 against
  frame 1), read in batches of frames (a video of any length)."""
  for i in range(0, len(frames), batch):
    x = np.asarray(frames[max(i - 1, 0):i + batch], np.float32)   # and the frame before
    d = np.abs(np.diff(x, axis=0)).mean(-1)
    yield from (np.concatenate([d[:1], d]) if i == 0 else d)


class _Frames:
  """Frame positions of a list of videos: record g ↔ (video, frame), by their lengths."""

  def __init__(self, videos):
    self.first = np.concatenate([[0], np.cumsum([len(v.frames) for v in videos])])

  def __len__(self) -> int:
    return int(self.first[-1])

  def locate(self, g: int) -> tuple[int, int]:
    vi = int(np.searchsorted(self.first, g, side='right')) - 1
    return vi, g - int(self.first[vi])

  def arrays(self):
    counts = np.diff(self.first)
    vi = np.repeat(np.arange(len(counts)), counts)
    return vi, np.arange(len(vi)) - self.first[vi]


class TrainPatches:
  """Random-access patches of the frames of normal videos, frame by frame in grid order.
  Without `min_change` the index is arithmetic; with it, one bit per patch and frame says
  which patches are kept (memory: frames × patches / 8 bytes)."""

  def __init__(self, videos, size: int, stride: int, min_change: float = 0.0):
    self.videos, self.size = videos, size
    self.corners = grid(*videos[0].frames.shape[1:3], size, stride)
    self.frames = _Frames(videos)
    self.keep = None
    if min_change > 0:
      keep = []
      for v in videos:
        for change in _changes(v.frames):
          area = np.pad(change, ((1, 0), (1, 0))).cumsum(0).cumsum(1)   # summed-area table
          means = np.array([area[y + size, x + size] - area[y, x + size] - area[y + size, x]
                            + area[y, x] for y, x in self.corners]) / size ** 2
          keep.append(np.packbits(means >= min_change))
      self.keep = np.stack(keep)
      counts = np.unpackbits(self.keep, axis=1, count=len(self.corners)).sum(1)
      self.first = np.concatenate([[0], np.cumsum(counts)])
      if self.first[-1] == 0:
        raise UserError(f'no training patch of {size}×{size} changes by at least '
                        f'{min_change} between frames; lower data.patches.min_change')

  def __len__(self) -> int:
    return int(self.first[-1]) if self.keep is not None else len(self.frames) * len(self.corners)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    if self.keep is None:
      g, p = divmod(int(i), len(self.corners))
    else:
      g = int(np.searchsorted(self.first, i, side='right')) - 1
      kept = np.flatnonzero(np.unpackbits(self.keep[g], count=len(self.corners)))
      p = int(kept[int(i) - int(self.first[g])])
    vi, t = self.frames.locate(g)
    y, x = self.corners[p]
    return {'image': self.videos[vi].frames[t, y:y + self.size, x:x + self.size]}


class PatchStacks:
  """One record per frame of the videos: its patches stacked, and the frame's labels."""

  def __init__(self, videos, size: int, stride: int):
    self.videos, self.size = videos, size
    self.corners = grid(*videos[0].frames.shape[1:3], size, stride)
    self.frames = _Frames(videos)

  def __len__(self) -> int:
    return len(self.frames)

  def position(self, i: int) -> tuple[int, int]:
    """(video, frame) of record i."""
    return self.frames.locate(int(i))

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    vi, t = self.position(i)
    v, s = self.videos[vi], self.size
    frame = v.frames[t]
    stack = np.stack([frame[y:y + s, x:x + s] for y, x in self.corners])
    return {'image': stack, 'label': v.labels[t], 'kind': v.kinds[t],
            'video': np.int32(vi), 'frame': np.int32(t)}

  def array(self, name: str) -> np.ndarray:
    vi, t = self.frames.arrays()
    if name == 'video':
      return vi.astype(np.int32)
    if name == 'frame':
      return t.astype(np.int32)
    if name in ('label', 'kind'):
      return frame_field(self.videos, vi, t, name)
    raise KeyError(f'{name!r} is read per record, not as one array')


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
  return dataclasses.replace(
      splits, train=TrainPatches(splits.train.videos, size, stride, min_change),
      val=PatchStacks(splits.val.videos, size, test_stride),
      test=PatchStacks(splits.test.videos, size, test_stride), has_masks=False,
      image_shape=(size, size, c))
