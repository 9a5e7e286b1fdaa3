"""Videos as clip sources (METHODS.md §0, clip sampling), and the embedded `moving_digits`.

A video is frames (T, H, W, C) in [0, 1] with per-frame labels and anomaly kinds (and
optionally pixel masks). Models see clips of `length` frames (NTHWC records):
  training  every (video, start, stride) whose clip fits, strides from `train_strides`
            (seed 001 samples strides {1, 2, 4, 8, 16}; strides that fit no video are dropped);
  scoring   one record per frame f: the stride-1 clip whose frame `anchor` is f (default
            `length // 2`: MemAE's code aligns clip i with frame i + 8 for 16-frame clips;
            `length - 1` for a predictor of the next frame), shifted inward at the ends of
            a video, so every frame gets a score. The record's label,
            kind and mask are frame f's; `video` and `frame` say where it came from and
            `offset` where f sits in the clip (for its pixel map).
"""

import dataclasses

import numpy as np

from vadjax.registry import UserError


@dataclasses.dataclass
class Video:
  frames: np.ndarray                 # (T, H, W, C) float32 in [0, 1]
  labels: np.ndarray                 # (T,) int32, 1 = anomalous frame
  kinds: np.ndarray                  # (T,) int32, anomaly kind per frame (0 normal)
  masks: np.ndarray | None = None    # (T, H, W) float32 pixel ground truth
  name: str = ''

  def __post_init__(self):
    t = len(self.frames)
    if self.frames.ndim != 4 or len(self.labels) != t or len(self.kinds) != t or (
        self.masks is not None and self.masks.shape != self.frames.shape[:3]):
      raise UserError(
          f'video {self.name!r}: frames must be (T, H, W, C) with T labels, kinds (and '
          f'masks of (T, H, W)); got frames {self.frames.shape}, {len(self.labels)} labels, '
          f'{len(self.kinds)} kinds, masks '
          f'{None if self.masks is None else self.masks.shape}')


class ClipSource:
  """Random-access clips over a list of videos (see the module docstring). Records are
  index arithmetic over the videos' frames: a block per (video, stride) holds its clip
  starts in order, so memory is a few numbers per video whatever the footage's length."""

  def __init__(self, videos: list[Video], length: int, strides=(1,), per_frame=False,
               anchor: int | None = None):
    self.videos, self.length, self.per_frame = videos, length, per_frame
    self.anchor = length // 2 if anchor is None else anchor
    if length == 1:       # a one-frame clip is the same at every stride: each frame once
      strides = (1,)
    short = [v.name for v in videos if len(v.frames) < length]
    if short:
      raise UserError(f'videos {short} have fewer frames than a clip ({length}); lower '
                      f'data.video.clip_length')
    blocks = []                                       # (video, stride, records)
    for vi, v in enumerate(videos):
      n = len(v.frames)
      for s in ((1,) if per_frame else strides):
        count = n if per_frame else n - (length - 1) * s
        if count > 0:
          blocks.append((vi, s, count))
    if not blocks:
      raise UserError(f'no clip of {length} frames with strides {tuple(strides)} fits the '
                      f'videos; lower data.video.clip_length or data.video.clip_strides')
    self.blocks = np.asarray(blocks, np.int64)
    self.first = np.concatenate([[0], np.cumsum(self.blocks[:, 2])])
    self.has_masks = all(v.masks is not None for v in videos)

  def __len__(self) -> int:
    return int(self.first[-1])

  def locate(self, i: int) -> tuple[int, int, int, int]:
    """(video, first frame, stride, scored frame) of record i."""
    if not 0 <= i < len(self):
      raise IndexError(f'record {i} of {len(self)}')
    b = int(np.searchsorted(self.first, i, side='right')) - 1
    vi, stride, j = int(self.blocks[b, 0]), int(self.blocks[b, 1]), i - int(self.first[b])
    if self.per_frame:
      n = len(self.videos[vi].frames)
      return vi, min(max(j - self.anchor, 0), n - self.length), 1, j
    return vi, j, stride, j + self.anchor * stride

  def position(self, i: int) -> tuple[int, int]:
    """(video, scored frame) of record i."""
    vi, _, _, f = self.locate(int(i))
    return vi, f

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    vi, start, stride, f = self.locate(int(i))
    v = self.videos[vi]
    rec = {'image': v.frames[start:start + self.length * stride:stride],
           'label': v.labels[f], 'kind': v.kinds[f], 'video': np.int32(vi),
           'frame': np.int32(f), 'offset': np.int32((f - start) // stride)}
    if self.has_masks:
      rec['mask'] = v.masks[f]
    return rec

  def array(self, name: str) -> np.ndarray:
    """A per-record field without reading frames: label, kind, video, frame."""
    if not self.per_frame:       # training clips: normal videos, their scored frames
      if name not in ('video', 'frame', 'label', 'kind'):
        raise KeyError(name)
      parts = [(np.full(c, vi), np.arange(c) + self.anchor * s) for vi, s, c in self.blocks]
      vi, f = (np.concatenate(p) for p in zip(*parts))
    else:
      vi = np.repeat(self.blocks[:, 0], self.blocks[:, 2])
      f = np.concatenate([np.arange(c) for c in self.blocks[:, 2]])
    if name == 'video':
      return vi.astype(np.int32)
    if name == 'frame':
      return f.astype(np.int32)
    if name in ('label', 'kind'):
      return frame_field(self.videos, vi, f, name)
    raise KeyError(f'{name!r} is read per record (e.g. in batches), not as one array')


FRAME_FIELDS = {'label': 'labels', 'kind': 'kinds'}


def frame_field(videos, video_index, frame_index, name: str) -> np.ndarray:
  """A per-frame field (label, kind) at (video, frame) index pairs."""
  attr = FRAME_FIELDS[name]
  out = np.empty(len(video_index), np.int32)
  for vi in np.unique(video_index):
    sel = video_index == vi
    out[sel] = getattr(videos[vi], attr)[frame_index[sel]]
  return out


def walker_x(walker: dict, t: int) -> float:
  """x position at frame t of a sprite entering at `x0` at frame `t0` with speed `v`; a
  loiterer (`stop` = (s0, s1)) stands still from frame s0 to s1 (the embedded scenes)."""
  dt = t - walker['t0']
  if walker['stop'] is not None:
    s0, s1 = walker['stop']
    dt = min(dt, s0 - walker['t0']) + max(0, dt - (s1 - walker['t0']))
  return walker['x0'] + walker['v'] * dt

