"""Frames → frozen backbone features, once per dataset, cached (seed 004: one DINO feature
vector per video frame, then a sequence model over them).

Every frame of every video goes through the backbone in one jitted batched pass; a frame's
vector is the class token (`pool='cls'`, ViTs) or the mean or max of the patch tokens
(ResNet's mean is its pooled 2048-d feature). Vectors are standardised with the mean and
standard deviation of the training videos' (per dimension), so distances mean the same for
every backbone. A feature video is a `Video` whose frames are (T, 1, 1, D): a 1×1 map of
D channels, so clips, labels and the frame-level protocol work unchanged.

The cache is `<cache_dir>/<category>-<key>.npz`, the key a hash of everything the features
depend on (dataset and its settings, backbone, the weights file's path, size and time,
pooling, input side); it is written to a temporary name and renamed, so an interrupted or
concurrent run never leaves a half file behind.
"""

import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

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


def extractor(module, variables, pool: str, side: int):
  """A jitted (B, H, W, C) frames in [0, 1] → (B, D) features: grey frames repeated to RGB,
  resized to `side`, ImageNet-normalised (as the DINO and torchvision weights expect)."""
  if pool not in POOLS:
    raise UserError(f'features.pool must be one of {POOLS}, got {pool!r}')

  @jax.jit
  def features(frames):
    x = jnp.broadcast_to(frames, frames.shape[:3] + (3,)) if frames.shape[-1] == 1 else frames
    if x.shape[1:3] != (side, side):
      x = jax.image.resize(x, (x.shape[0], side, side, 3), 'linear')
    out = module.apply(variables, (x - IMAGENET_MEAN) / IMAGENET_STD)
    if pool == 'cls':
      if 'cls' not in out:
        raise UserError('features.pool=cls needs a ViT backbone; use mean or max')
      return out['cls']
    return jnp.mean(out['tokens'], 1) if pool == 'mean' else jnp.max(out['tokens'], 1)
  return features


def video_features(fn, frames: np.ndarray, batch_size: int) -> np.ndarray:
  """(T, H, W, C) → (T, D), in batches of a fixed size (one compilation)."""
  out = []
  for i in range(0, len(frames), batch_size):
    chunk = frames[i:i + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    out.append(np.asarray(fn(chunk))[:batch_size - pad])
  return np.concatenate(out)


def cache_key(settings: dict, dataset: str, category: str, frames_shape,
              data_cfg: dict) -> str:
  weights = settings['weights']
  stamp = ((os.path.abspath(weights), os.path.getsize(weights), os.stat(weights).st_mtime_ns)
           if weights and os.path.isfile(weights) else weights)
  text = json.dumps([dataset, category, list(frames_shape), data_cfg, stamp,
                     {k: settings[k] for k in ('backbone', 'pool', 'input_size', 'init_seed')}],
                    sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _extract(splits: Splits, settings: dict) -> dict[str, np.ndarray]:
  side = settings['input_size'] or splits.image_shape[-2]
  module, variables = backbone(settings, side)
  fn = extractor(module, variables, settings['pool'], side)
  t0, arrays = time.perf_counter(), {}
  for split in ('train', 'val', 'test'):
    for i, v in enumerate(getattr(splits, split).videos):
      arrays[f'{split}_{i}'] = video_features(fn, v.frames, settings['batch_size'])
  n = sum(len(a) for a in arrays.values())
  logging.info('%s features of %d frames in %.1f s', settings['backbone'], n,
               time.perf_counter() - t0)
  return arrays


def _load_or_extract(splits, settings, path: str | None) -> dict[str, np.ndarray]:
  if path and os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
      logging.warning('feature cache %s unreadable (%s); extracting again', path, e)
  arrays = _extract(splits, settings)
  if path:
    checkpoints.save_npz(path, arrays)
  return arrays


def feature_splits(splits: Splits, settings: dict, dataset: str, category: str,
                   data_cfg: dict, cache_dir: str | None, clip_length: int,
                   strides) -> Splits:
  """The splits of a video dataset as standardised feature videos, in clips of
  `clip_length` feature vectors whose scored frame is the last."""
  if not all(hasattr(getattr(splits, s), 'videos') for s in ('train', 'val', 'test')):
    raise UserError(f'feature prediction needs a video dataset; {dataset!r} is not one')
  path = None
  if cache_dir:
    key = cache_key(settings, dataset, category, splits.image_shape, data_cfg)
    path = os.path.join(cache_dir, f'{category}-{key}.npz')
  arrays = _load_or_extract(splits, settings, path)
  train = np.concatenate([arrays[f'train_{i}'] for i in range(len(splits.train.videos))])
  mean, std = train.mean(0), train.std(0) + 1e-6
  made = {}
  for split in ('train', 'val', 'test'):
    made[split] = [Video(((arrays[f'{split}_{i}'] - mean) / std)[:, None, None, :]
                         .astype(np.float32), v.labels, v.kinds, name=v.name)
                   for i, v in enumerate(getattr(splits, split).videos)]
  d = train.shape[-1]
  return Splits(ClipSource(made['train'], clip_length, strides),
                ClipSource(made['val'], clip_length, per_frame=True, anchor=clip_length - 1),
                ClipSource(made['test'], clip_length, per_frame=True, anchor=clip_length - 1),
                kind_names=splits.kind_names, has_masks=False,
                image_shape=(clip_length, 1, 1, d))
