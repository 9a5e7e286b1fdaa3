"""The frame store read back (vadjax/data/store.py writes it): a complete preparation's
manifest, and its splits' frames and masks by index, sliced like arrays and read on demand
through Grain's `ArrayRecordDataSource`, with a small LRU cache of decoded records."""

import dataclasses
import json
import os
import threading
from collections import OrderedDict

import numpy as np

from vadjax.data.frames import labels_from_runs
from vadjax.data.video import Video
from vadjax.registry import UserError

FORMAT = 1


def read_json(path: str):
  """A JSON file of the store, None when missing; a damaged one is a one-line error."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise UserError(f'{path} is unreadable ({e}); delete {os.path.dirname(path)} to prepare '
                    f'the dataset again') from None


@dataclasses.dataclass(frozen=True)
class _Shard:
  """What ArrayRecordDataSource reads of a shard (its FileInstruction protocol): the frame
  count comes from the manifest, so opening a split opens no file."""
  filename: str
  skip: int
  take: int
  examples_in_shard: int


class FrameRecords:
  """A split's frames by index: {'image': uint8 (S, S, C)} and 'mask': uint8 (S, S) where
  the frame's video has pixel ground truth."""

  def __init__(self, path: str, shards: list, size: int, channels: int):
    from grain.sources import ArrayRecordDataSource
    self.shape = (size, size, channels)
    self.image_bytes = size * size * channels
    self.source = ArrayRecordDataSource([
        _Shard(os.path.join(path, s['file']), 0, s['frames'], s['frames']) for s in shards])

  def __len__(self) -> int:
    return len(self.source)

  def _decode(self, raw: bytes) -> dict:
    b = np.frombuffer(raw, np.uint8)
    out = {'image': b[:self.image_bytes].reshape(self.shape)}
    if len(b) > self.image_bytes:
      out['mask'] = b[self.image_bytes:].reshape(self.shape[:2])
    return out

  def __getitem__(self, i: int) -> dict:
    return self._decode(self.source[int(i)])

  def __getitems__(self, indices) -> list[dict]:
    # one read at a time: ArrayRecordDataSource.__getitems__ starts a thread pool per call,
    # which costs 5× the reads themselves for a clip's 8 local records (1.3 vs 0.27 ms)
    return [self._decode(self.source[int(i)]) for i in indices]


class CachedRecords:
  """A source with an LRU cache of decoded records: scoring reads every frame's clip, so
  consecutive records share all but one frame (and the mask is in the same record)."""

  def __init__(self, source, size: int = 512):
    self.source, self.size, self.cache = source, size, OrderedDict()
    self.lock = threading.Lock()          # Grain reads from several threads

  def __getstate__(self):                 # worker processes start with an empty cache
    return {'source': self.source, 'size': self.size}

  def __setstate__(self, state):
    self.__init__(state['source'], state['size'])

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    return self.__getitems__([i])[0]

  def __getitems__(self, indices):
    with self.lock:
      found = {i: self.cache[i] for i in indices if i in self.cache}
    missing = sorted(set(indices) - set(found))
    if missing:
      found.update(zip(missing, self.source.__getitems__(missing)))
    with self.lock:
      for i in indices:
        self.cache[i] = found[i]
        self.cache.move_to_end(i)
      while len(self.cache) > self.size:
        self.cache.popitem(last=False)
    return [found[i] for i in indices]


class FrameView:
  """Frames (or masks) `start … start + length − 1` of a stored split, sliced like a
  (T, H, W[, C]) float32 array and read on demand."""

  def __init__(self, source, start: int, length: int, field: str, shape: tuple):
    self.source, self.start, self.length, self.field = source, start, length, field
    self.shape = (length, *shape)
    self.ndim = len(self.shape)

  def __len__(self):
    return self.length

  def _field(self, record: dict) -> np.ndarray:
    if self.field == 'mask' and 'mask' not in record:     # a video without ground truth
      return np.zeros(self.shape[1:], np.uint8)
    return record[self.field]

  def part(self, first: int, length: int) -> 'FrameView':
    """Frames first … first + length − 1 of this view, as a view."""
    return FrameView(self.source, self.start + first, length, self.field, self.shape[1:])

  def __getitem__(self, key):
    if isinstance(key, tuple):                 # frames first, then pixels (patches)
      head, rest = key[0], key[1:]
      out = self[head]
      return out[rest] if not isinstance(head, slice) else out[(slice(None), *rest)]
    if isinstance(key, slice):
      rows = range(*key.indices(self.length))
      recs = self.source.__getitems__([self.start + r for r in rows])
      out = (np.stack([self._field(r) for r in recs]) if recs
             else np.zeros((0, *self.shape[1:])))
    else:
      key = range(self.length)[key]
      out = self._field(self.source[self.start + key])
    if self.field == 'image':
      return np.divide(out, np.float32(255), dtype=np.float32)
    return np.asarray(out, np.float32)


class Store:
  """A complete preparation: its manifest and the videos of each split."""

  def __init__(self, path: str):
    self.path = path
    self.manifest = read_json(os.path.join(path, 'manifest.json'))
    if not self.manifest or self.manifest.get('format') != FORMAT:
      raise UserError(f'{path} holds no prepared dataset of this vadjax version; delete it '
                      f'to prepare the dataset again')
    self.meta = self.manifest['meta']
    self.digest = self.manifest['digest']

  def videos(self, split: str, relabel=None, masks: str = 'stored') -> list[Video]:
    """The split's videos, frames and masks read on demand; `relabel(video entry, labels)`
    may change a video's labels (Subway's label window); `masks='zeros_if_none'` gives a
    video without pixel ground truth all-normal masks (a user's normal videos)."""
    m, st = self.manifest, self.manifest['splits'][split]
    s, c = m['size'], m['channels']
    src = CachedRecords(FrameRecords(self.path, st['shards'], s, c))
    if len(src) != st['frames']:
      raise UserError(f'{self.path}: {len(src)} frames in the {split} split but its manifest '
                      f'lists {st["frames"]}; delete the folder to prepare it again')
    out = []
    for v in st['videos']:
      labels = labels_from_runs(v['anomalous'], v['length'])
      if relabel is not None:
        labels = relabel(v, labels)
      has = v['has_mask'] or masks == 'zeros_if_none'
      mask = FrameView(src, v['start'], v['length'], 'mask', (s, s)) if has else None
      out.append(Video(FrameView(src, v['start'], v['length'], 'image', (s, s, c)), labels,
                       labels.copy(), mask, v['name']))
    return out
