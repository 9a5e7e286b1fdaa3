"""Video datasets prepared once into an on-disk store (read back frame by frame: stored.py).

Every video dataset (UCSD Ped1/2, Avenue, Subway, ShanghaiTech, folder_video) lists its
videos as `VideoSpec`s (how to decode its frames from any frame on, its labels, its pixel
masks, the files it is made from) and is prepared here: decoded frame by frame, each frame
cropped, converted and resized once (frames.to_frame), and written in order into
array_record shards, one record per frame (the uint8 frame's bytes, then its uint8 mask's
where the video has pixel ground truth). Training and evaluation read frames by index
through Grain's `ArrayRecordDataSource`; clips are index arithmetic over frames
(video.ClipSource). Memory holds a frame and one record cache, whatever the footage's length.

Layout: <data_dir>/vad_<dataset>/<frame config>/
  .lock                          held (flock) by the process preparing here
  src-<digest>/                  one preparation of one version of the source files
    <split>-<nnnnn>.array_record shards of about SHARD_BYTES, committed one by one
    progress.json                what is committed: shards, finished videos (and so the
                                 position in the video being written)
    manifest.json                written last: every split's videos (name, first record,
                                 length, anomalous frame runs, pixel masks or not)

Resumable: a shard is written under a temporary name, synced and renamed, then
progress.json is replaced atomically, so `kill -9` at any point loses at most the shard
being written; the next run continues from the last committed frame (the earlier frames of
that video are decoded and dropped). The digest covers every source file's relative path,
size and modification time and the content of the annotation files, so a changed source
folder is prepared again into a new folder instead of being silently reused.

Multi-host: process 0 prepares; the others wait for its manifest (the data dir must be a
path every host sees, docs/distributed.md). Processes on one machine take turns through
the lock, so two runs started together prepare once.

Why not a TFDS builder (the image datasets have one): TFDS writes every split into a
temporary folder renamed at the end, so an interrupted preparation of hours of footage
starts again from nothing; and it checks no source files once prepared.
"""

import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import shutil
import time
from typing import Callable, Iterable, Sequence

import numpy as np
from absl import logging

from vadjax.data import formats
from vadjax.data.frames import FrameConfig, label_runs, to_frame, to_mask
from vadjax.data.stored import FORMAT, Store, read_json
from vadjax.progress import Progress
from vadjax.registry import UserError

SHARD_BYTES = 256 << 20
WAIT_S = 24 * 3600           # how long a non-zero process waits for process 0's preparation


@dataclasses.dataclass
class VideoSpec:
  """One video of a dataset, as its files give it (nothing decoded yet)."""
  name: str
  frames: Callable[[int], Iterable[np.ndarray]]   # frames(start): uint8 (H, W[, 3]) from `start`
  labels: Callable[[int, Sequence | None], np.ndarray]   # (frame count, masks) → 0/1 labels
  masks: Callable[[], Sequence] | None = None     # → per-frame masks (image paths or arrays)
  files: Sequence[str] = ()                       # frame sources: path, size, time in the digest
  annotations: Sequence[str] = ()                 # ground truth: content in the digest
  length: int | Callable[[], int | None] | None = None   # frame count (progress); lazy


@dataclasses.dataclass
class Listing:
  """A dataset's videos per stored split (written in this order; the protocol makes its
  train / val / test of them) and facts for its protocol (Subway's events)."""
  videos: dict
  meta: dict = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- the digest

def _update(h, path: str, root: str, content: bool) -> None:
  try:
    st = os.stat(path)
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror}') from None
  h.update(f'{os.path.relpath(path, root)}\0{st.st_size}\0'.encode())
  if content:
    with open(path, 'rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        h.update(block)
  else:
    h.update(str(st.st_mtime_ns).encode())


def source_digest(listing: Listing, root: str, cfg: FrameConfig) -> str:
  """16 hex digits over what the prepared frames depend on (the module docstring)."""
  h = hashlib.sha256(json.dumps([FORMAT, cfg.name, listing.meta], sort_keys=True,
                                default=str).encode())
  for split, videos in listing.videos.items():
    for v in videos:
      h.update(f'\n{split}\0{v.name}\n'.encode())
      for p in v.files:
        _update(h, p, root, content=False)
      for p in v.annotations:
        _update(h, p, root, content=True)
  return h.hexdigest()[:16]


# --------------------------------------------------------------------------- writing

def _write_json(path: str, value) -> None:
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(value, f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


class _Split:
  """Writes one split's records into shards and commits them (see the module docstring)."""

  def __init__(self, path: str, split: str, progress: dict, shard_frames: int):
    self.path, self.split, self.progress, self.shard_frames = path, split, progress, shard_frames
    self.state = progress['splits'][split]
    self.writer, self.count, self.pending = None, 0, []

  def write(self, record: bytes) -> None:
    if self.writer is None:
      from array_record.python.array_record_module import ArrayRecordWriter
      self.tmp = os.path.join(self.path, f'{self.split}.tmp')
      self.writer = ArrayRecordWriter(self.tmp, 'group_size:1,uncompressed')
    self.writer.write(record)
    self.count += 1
    if self.count == self.shard_frames:
      self.commit()

  def finish(self, video: dict) -> None:
    """A video's frames are all written; it is committed with the shard of its last frame."""
    self.pending.append(video)
    if self.count == 0:
      self.commit()

  def commit(self) -> None:
    st = self.state
    if self.writer is not None:
      self.writer.close()
      with open(self.tmp, 'rb') as f:
        os.fsync(f.fileno())
      name = f'{self.split}-{len(st["shards"]):05d}.array_record'
      os.replace(self.tmp, os.path.join(self.path, name))
      st['shards'].append({'file': name, 'frames': self.count})
      st['frames'] += self.count
      self.writer, self.count = None, 0
    done = [v for v in self.pending if v['start'] + v['length'] <= st['frames']]
    st['videos'] += done
    self.pending = [v for v in self.pending if v not in done]
    _write_json(os.path.join(self.path, 'progress.json'), self.progress)


def _record(frame, masks, n: int, spec: VideoSpec, cfg: FrameConfig) -> bytes:
  rec = to_frame(frame, cfg, f'{spec.name} frame {n + 1}').tobytes()
  if masks is None:
    return rec
  if n >= len(masks):
    raise UserError(f'{spec.name}: more frames than pixel masks ({len(masks)}); frames and '
                    f'ground truth do not match')
  m = masks[n]
  m = formats.read_image(m) if isinstance(m, str) else np.asarray(m)
  return rec + to_mask(m, cfg).tobytes()


def _write_video(spec: VideoSpec, skip: int, start: int, out: _Split, cfg: FrameConfig,
                 bar: Progress) -> int:
  """Writes the video's frames from `skip` on (its first record is `start`); its length."""
  masks = spec.masks() if spec.masks is not None else None
  n = skip
  for frame in spec.frames(skip):
    out.write(_record(frame, masks, n, spec, cfg))
    n += 1
    bar.update(1)
  if n == 0:
    raise UserError(f'{spec.name}: no frames; the video is empty or unreadable')
  if masks is not None and n != len(masks):
    raise UserError(f'{spec.name}: {n} frames but {len(masks)} pixel masks; frames and '
                    f'ground truth do not match')
  labels = np.asarray(spec.labels(n, masks))
  if labels.shape != (n,):
    raise UserError(f'{spec.name}: {n} frames but {len(labels)} frame labels; frames and '
                    f'ground truth do not match')
  out.finish({'name': spec.name, 'start': start, 'length': n,
              'anomalous': label_runs(labels), 'has_mask': masks is not None})
  return n


def _write(path: str, name: str, cfg: FrameConfig, listing: Listing, digest: str,
           shard_bytes: int, show_progress: bool) -> None:
  os.makedirs(path, exist_ok=True)
  progress = read_json(os.path.join(path, 'progress.json')) or {
      'format': FORMAT, 'digest': digest, 'splits': {}}
  record_bytes = cfg.size * cfg.size * (cfg.channels + 1)
  shard_frames = max(1, shard_bytes // record_bytes)
  lengths = [v.length() if callable(v.length) else v.length
             for vs in listing.videos.values() for v in vs]
  total = None if None in lengths else sum(lengths)
  bar = Progress(f'preparing {name} ({cfg.name})', total, show_progress)
  committed = sum(s['frames'] for s in progress['splits'].values())
  if committed:
    logging.info('%s: resuming the preparation in %s after %d committed frames', name, path,
                 committed)
    bar.update(committed)
  for split, videos in listing.videos.items():
    state = progress['splits'].setdefault(split, {'shards': [], 'videos': [], 'frames': 0})
    out = _Split(path, split, progress, shard_frames)
    # the first video not committed whole, its first record and its committed frames
    start = sum(v['length'] for v in state['videos'])
    skip = state['frames'] - start
    for spec in videos[len(state['videos']):]:
      start += _write_video(spec, skip, start, out, cfg, bar)
      skip = 0
    out.commit()
  bar.close()
  manifest = {'format': FORMAT, 'dataset': name, 'config': cfg.name, 'digest': digest,
              'size': cfg.size, 'channels': cfg.channels, 'meta': listing.meta,
              'splits': progress['splits'],
              'prepared': time.strftime('%Y-%m-%d %H:%M:%S')}
  _write_json(os.path.join(path, 'manifest.json'), manifest)


# --------------------------------------------------------------------------- opening

@contextlib.contextmanager
def _locked(root: str):
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, '.lock'), 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      logging.info('another process is preparing %s; waiting for it', root)
      fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _complete(path: str) -> bool:
  return os.path.isfile(os.path.join(path, 'manifest.json'))


def _newest_complete(root: str) -> str | None:
  done = [os.path.dirname(p) for p in glob.glob(os.path.join(root, 'src-*', 'manifest.json'))]
  return max(done, key=lambda p: os.path.getmtime(os.path.join(p, 'manifest.json')),
             default=None)


def _wait_for(path: str | None, root: str, timeout_s: float) -> str:
  """Process > 0 of a multi-host run: the store process 0 prepares."""
  t0 = last = time.monotonic()
  while True:
    found = path if path and _complete(path) else (None if path else _newest_complete(root))
    if found:
      return found
    now = time.monotonic()
    if now - t0 > timeout_s:
      raise UserError(f'process 0 did not finish preparing {path or root} in {timeout_s:.0f} s; '
                      f'is data.tfds_dir a folder every host sees?')
    if now - last > 60:
      logging.info('waiting for process 0 to prepare %s', path or root)
      last = now
    time.sleep(1.0)


def open_store(name: str, cfg: FrameConfig, data_dir: str, manual_dir: str,
               listing: Callable[[str], Listing], instructions: str, scope: str = '',
               process_index: int = 0, shard_bytes: int = SHARD_BYTES,
               show_progress: bool = True, wait_s: float = WAIT_S) -> 'Store':
  """The store of dataset `name` at frame config `cfg`: prepared from `manual_dir` (its
  files listed by `listing(manual_dir)`) unless a complete preparation of these very files
  exists; without `manual_dir`, the newest complete preparation in `data_dir`. `scope`
  separates sources of one dataset that are not versions of each other (users' folders)."""
  root = os.path.join(os.path.expanduser(data_dir), f'vad_{name}', scope, cfg.name)
  if not manual_dir:
    path = _newest_complete(root)
    if path is None and process_index > 0:
      path = _wait_for(None, root, wait_s)
    if path is None:
      raise UserError(f'dataset {name!r} is not prepared in {data_dir} and data.manual_dir '
                      f'is not set; point it at the raw files.\n{instructions}')
    return Store(path)
  if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
    raise UserError(f'the files of {name} are missing: the manual folder {manual_dir} '
                    f'(data.manual_dir) does not exist or is empty.\n{instructions}')
  videos = listing(manual_dir)
  digest = source_digest(videos, manual_dir, cfg)
  path = os.path.join(root, f'src-{digest}')
  if _complete(path):
    return Store(path)
  if process_index > 0:
    return Store(_wait_for(path, root, wait_s))
  with _locked(root):
    if not _complete(path):
      _drop_others(root, path)
      logging.info('preparing %s (%s) from the files in %s into %s; nothing is downloaded',
                   name, cfg.name, manual_dir, path)
      _write(path, name, cfg, videos, digest, shard_bytes, show_progress)
  return Store(path)


def _drop_others(root: str, keep: str) -> None:
  """Incomplete preparations of other source versions are unusable: removed (under the
  lock). Complete ones may be in use by other runs: named, kept."""
  for other in glob.glob(os.path.join(root, 'src-*')):
    if os.path.abspath(other) == os.path.abspath(keep):
      continue
    if _complete(other):
      logging.warning('the source files changed since %s was prepared; preparing them again '
                      'into %s (delete the old folder once no run uses it)', other, keep)
    else:
      shutil.rmtree(other, ignore_errors=True)
