"""Frames → frozen backbone features, once per dataset, cached (seed 004: one DINO feature
vector per video frame, then a sequence model over them).

Every frame of every video goes through the backbone in one jitted batched pass; a frame's
vector is the class token (`pool='cls'`, ViTs) or the mean or max of the patch tokens
(ResNet's mean is its pooled 2048-d feature). Vectors are standardised with the mean and
standard deviation of the training videos' (per dimension), so distances mean the same for
every backbone. A feature video is a `Video` whose frames are (T, 1, 1, D): a 1×1 map of
D channels, so clips, labels and the frame-level protocol work unchanged.

The cache is `<cache_dir>/<category>-<key>/{train,val,test}.npy`, one (frames, D) table per
split with the videos in order, the key a hash of everything the features depend on
(dataset and its settings, backbone, the weights file's path, size and time, pooling, input
side). It is written batch by batch into a temporary folder that is renamed when complete,
so an interrupted or concurrent run never leaves half a cache behind; it is read back row by
row (vadjax/data/formats.NpyRows), so memory holds batches, not the footage's features.
"""

import atexit
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vadjax.data import formats
from vadjax.data.sources import Splits
from vadjax.data.video import ClipSource, Video
from vadjax.models import checkpoints
from vadjax.registry import UserError

POOLS = ('cls', 'mean', 'max')
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def backbone(settings: dict, side: int):
  """(module, variables) of the configured backbone: random (`weights=''`, seeded by
  `init_seed`) or loaded from a checkpoint file."""
  if settings['weights']:
    return checkpoints.load_backbone(settings['backbone'], settings['weights'], 3, side)
  return checkpoints.init_backbone(settings['backbone'], 3, side, settings['init_seed'])


def features_of(module, variables, frames, pool: str, side: int):
  """(B, H, W, C) frames in [0, 1] → (B, D) features: grey frames repeated to RGB, resized
  to `side`, ImageNet-normalised (as the DINO and torchvision weights expect)."""
  x = jnp.broadcast_to(frames, frames.shape[:3] + (3,)) if frames.shape[-1] == 1 else frames
  if x.shape[1:3] != (side, side):
    x = jax.image.resize(x, (x.shape[0], side, side, 3), 'linear')
  out = module.apply(variables, (x - IMAGENET_MEAN) / IMAGENET_STD)
  if pool == 'cls':
    if 'cls' not in out:
      raise UserError('features.pool=cls needs a ViT backbone; use mean or max')
    return out['cls']
  return jnp.mean(out['tokens'], 1) if pool == 'mean' else jnp.max(out['tokens'], 1)


def extractor(module, variables, pool: str, side: int):
  """`features_of` jitted, with the backbone's variables closed over."""
  if pool not in POOLS:
    raise UserError(f'features.pool must be one of {POOLS}, got {pool!r}')
  return jax.jit(lambda frames: features_of(module, variables, frames, pool, side))


def video_features(fn, frames, batch_size: int):
  """(T, H, W, C) frames (an array or a view read on demand) → (T, D) features, yielded in
  batches of a fixed size (one compilation)."""
  for i in range(0, len(frames), batch_size):
    chunk = np.asarray(frames[i:i + batch_size], np.float32)
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    yield np.asarray(fn(chunk), np.float32)[:batch_size - pad]


def cache_key(settings: dict, dataset: str, category: str, frames_shape,
              data_cfg: dict) -> str:
  weights = settings['weights']
  stamp = ((os.path.abspath(weights), os.path.getsize(weights), os.stat(weights).st_mtime_ns)
           if weights and os.path.isfile(weights) else weights)
  text = json.dumps([dataset, category, list(frames_shape), data_cfg, stamp,
                     {k: settings[k] for k in ('backbone', 'pool', 'input_size', 'init_seed')}],
                    sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_split(path: str, fn, videos, batch_size: int) -> None:
  """Every frame's feature of a split's videos, in order, into one (frames, D) .npy file,
  written batch by batch (the header once the first batch gives D)."""
  n = sum(len(v.frames) for v in videos)
  with open(path, 'wb') as f:
    for v in videos:
      for part in video_features(fn, v.frames, batch_size):
        if f.tell() == 0:
          np.lib.format.write_array_header_1_0(f, {'descr': np.lib.format.dtype_to_descr(
              np.dtype(np.float32)), 'fortran_order': False, 'shape': (n, part.shape[-1])})
        f.write(np.ascontiguousarray(part).tobytes())


def _extract(splits: Splits, settings: dict, folder: str) -> None:
  """The features of every frame into `folder` (<split>.npy), written under a temporary
  name and renamed, so an interrupted or concurrent run never leaves half a cache."""
  side = settings['input_size'] or splits.image_shape[-2]
  module, variables = backbone(settings, side)
  fn = extractor(module, variables, settings['pool'], side)
  t0, n = time.perf_counter(), 0
  tmp = f'{folder}.tmp{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  for split in ('train', 'val', 'test'):
    videos = getattr(splits, split).videos
    _write_split(os.path.join(tmp, f'{split}.npy'), fn, videos, settings['batch_size'])
    n += sum(len(v.frames) for v in videos)
  try:
    os.rename(tmp, folder)
  except OSError:                   # another run finished the same cache first
    shutil.rmtree(tmp, ignore_errors=True)
  logging.info('%s features of %d frames in %.1f s', settings['backbone'], n,
               time.perf_counter() - t0)


def _cached(splits, settings, folder: str) -> dict:
  """{split: rows of its .npy}, extracting first when the cache is missing or unreadable."""
  for attempt in (0, 1):
    if os.path.isdir(folder):
      try:
        rows = {s: formats.NpyRows(os.path.join(folder, f'{s}.npy'))
                for s in ('train', 'val', 'test')}
        if all(len(rows[s]) == sum(len(v.frames) for v in getattr(splits, s).videos)
               for s in rows):
          return rows
      except UserError as e:
        logging.warning('feature cache %s unreadable (%s); extracting again', folder, e)
      shutil.rmtree(folder, ignore_errors=True)
    if attempt == 0:
      _extract(splits, settings, folder)
  raise UserError(f'cannot write a readable feature cache in {folder}')


class FeatureFrames:
  """Rows start … start + length − 1 of a feature table, standardised, sliced like a
  (T, 1, 1, D) float32 array of frames and read on demand."""

  def __init__(self, rows, start: int, length: int, mean, std):
    self.rows, self.start, self.length, self.mean, self.std = rows, start, length, mean, std
    self.shape = (length, 1, 1, rows.shape[1])
    self.ndim = 4

  def __len__(self):
    return self.length

  def __getitem__(self, key):
    if isinstance(key, slice):
      idx = range(*key.indices(self.length))
      if not len(idx):
        return np.zeros((0,) + self.shape[1:], np.float32)
      x = self.rows.read(self.start + idx.start, self.start + idx[-1] + 1)[::idx.step]
    else:
      x = self.rows[self.start + range(self.length)[key]][None]
    x = ((x - self.mean) / self.std).astype(np.float32)[:, None, None, :]
    return x if isinstance(key, slice) else x[0]


def _standardisation(rows, batch: int = 4096):
  """Per-dimension mean and standard deviation of a feature table, read in batches."""
  n, total, squares = len(rows), 0.0, 0.0
  for i in range(0, n, batch):
    x = rows.read(i, i + batch).astype(np.float64)
    total, squares = total + x.sum(0), squares + np.square(x).sum(0)
  mean = total / n
  return mean, np.sqrt(np.maximum(squares / n - mean ** 2, 0.0)) + 1e-6


def feature_splits(splits: Splits, settings: dict, dataset: str, category: str,
                   data_cfg: dict, cache_dir: str | None, clip_length: int,
                   strides) -> Splits:
  """The splits of a video dataset as standardised feature videos, in clips of
  `clip_length` feature vectors whose scored frame is the last. The features are read from
  the cache on demand (no cache dir: a temporary one, removed at exit)."""
  if not all(hasattr(getattr(splits, s), 'videos') for s in ('train', 'val', 'test')):
    raise UserError(f'feature prediction needs a video dataset; {dataset!r} is not one')
  if not cache_dir:
    cache_dir = tempfile.mkdtemp(prefix='vadjax-features-')
    atexit.register(shutil.rmtree, cache_dir, True)
  key = cache_key(settings, dataset, category, splits.image_shape, data_cfg)
  os.makedirs(cache_dir, exist_ok=True)
  rows = _cached(splits, settings, os.path.join(cache_dir, f'{category}-{key}'))
  mean, std = _standardisation(rows['train'])
  _save_frontend(cache_dir, category, mean, std, splits.image_shape)
  made = {}
  for split in ('train', 'val', 'test'):
    made[split], start = [], 0
    for v in getattr(splits, split).videos:
      n = len(v.frames)
      made[split].append(Video(FeatureFrames(rows[split], start, n, mean, std), v.labels,
                               v.kinds, name=v.name))
      start += n
  d = rows['train'].shape[1]
  return dataclasses.replace(
      splits, train=ClipSource(made['train'], clip_length, strides),
      val=ClipSource(made['val'], clip_length, per_frame=True, anchor=clip_length - 1),
      test=ClipSource(made['test'], clip_length, per_frame=True, anchor=clip_length - 1),
      has_masks=False, image_shape=(clip_length, 1, 1, d))


def frontend_path(cache_dir: str, category: str) -> str:
  return os.path.join(cache_dir, f'{category}.frontend.npz')


def _save_frontend(cache_dir: str, category: str, mean, std, frame_shape) -> None:
  """What scoring raw frames needs beside the backbone (vadjax/serving/predict.py): the
  training features' standardisation and the frames' shape; replaced atomically."""
  tmp = f'{frontend_path(cache_dir, category)}.tmp{os.getpid()}.npz'
  np.savez(tmp, mean=mean, std=std, frame_shape=np.asarray(frame_shape, np.int64))
  os.replace(tmp, frontend_path(cache_dir, category))


def load_frontend(cache_dir: str, category: str) -> dict:
  """{'mean', 'std', 'frame_shape'} saved when the run's features were prepared."""
  path = frontend_path(cache_dir, category)
  if not os.path.isfile(path):
    raise UserError(f'{path} is missing: this feature-prediction run was prepared before '
                    f'frames could be scored; run it once with --mode=eval to write it')
  try:
    with np.load(path, allow_pickle=False) as f:
      return {'mean': f['mean'].astype(np.float32), 'std': f['std'].astype(np.float32),
              'frame_shape': tuple(int(x) for x in f['frame_shape'])}
  except (OSError, ValueError, KeyError) as e:
    raise UserError(f'{path} is unreadable ({e}); run with --mode=eval to write it again'
                    ) from None
