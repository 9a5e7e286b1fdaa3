"""Feature prediction (seed 004, Scotto 2021): a frozen backbone (a DINO ViT; ResNet-50 the
baseline) gives one vector per frame; a sequence model predicts each next vector; a frame's
anomaly score is the distance between its predicted and its actual vector.

`prepare` turns a video dataset into standardised feature videos once (cached in the
workdir, vadjax/methods/feature_cache.py); the model is `feature_predictor` (LSTM or, the seed's
future work, a causal Transformer). Distances, on standardised vectors:
  l2      ‖p − x‖² / D
  cosine  1 − cos(p, x)
The loss is the mean distance over a clip's T − 1 predictions; a frame's score is the
distance of its own prediction (the last of its clip; a video's first frame, with no
history, takes its successor's). The three video poolings and per-video normalisation are
the shared frame-level protocol (METHODS.md §0).
"""

import jax.numpy as jnp

from vadjax.methods import METHODS
from vadjax.methods.base import Method, settings
from vadjax.methods.feature_cache import POOLS, feature_splits
from vadjax.methods.reconstruction import weighted_mean
from vadjax.models import BACKBONES
from vadjax.registry import UserError

DISTANCES = ('l2', 'cosine')


def distance(pred, target, kind: str):
  """(..., D) pairs → (...) distances."""
  if kind == 'l2':
    return jnp.mean(jnp.square(pred - target), axis=-1)
  num = jnp.sum(pred * target, axis=-1)
  den = jnp.linalg.norm(pred, axis=-1) * jnp.linalg.norm(target, axis=-1)
  return 1.0 - num / jnp.maximum(den, 1e-8)


@METHODS.register('feature_prediction')
class FeaturePrediction(Method):
  group = 'features'
  # backbone: a BACKBONES name; weights: '' (random, seeded by init_seed) or a checkpoint
  # file (.pth, .safetensors, .npz: the DINO release's, torchvision's, or the backbone.npz
  # of experiments.dino); input_size: frames resized to it (0 = as loaded)
  DEFAULTS = {'backbone': 'vit_mini', 'weights': '', 'init_seed': 0, 'pool': 'cls',
              'input_size': 0, 'distance': 'l2', 'batch_size': 32}

  def __init__(self, config=None):
    self.s = settings(config, self.group, self.DEFAULTS)
    BACKBONES.get(self.s['backbone'])
    for key, allowed in (('distance', DISTANCES), ('pool', POOLS)):
      if self.s[key] not in allowed:
        raise UserError(f'features.{key} must be one of {allowed}, got {self.s[key]!r}')
    self.clip_length = config.data.video.clip_length if config is not None else 2
    self.strides = config.data.video.clip_strides if config is not None else (1,)
    self.data_cfg = config.data if config is not None else {}
    self.image_size = config.image_size if config is not None else 0
    if self.clip_length < 2:
      raise UserError('feature prediction predicts from history: data.video.clip_length '
                      f'must be >= 2, got {self.clip_length}')

  def prepare(self, splits, dataset, category, cache_dir):
    return feature_splits(splits, self.s, dataset, category,
                          {'image_size': self.image_size, **_plain(self.data_cfg)},
                          cache_dir, self.clip_length, self.strides)

  def _distances(self, outputs):
    return distance(outputs['prediction'], outputs['target'], self.s['distance'])

  def loss_fn(self, outputs, batch):
    loss = weighted_mean(jnp.mean(self._distances(outputs), axis=1), batch)
    return loss, {'distance': loss}

  def score_fn(self, outputs, batch):
    d = self._distances(outputs)                    # (B, T − 1): frames 1..T−1
    t = batch['image'].shape[1]
    offset = batch['offset'] if 'offset' in batch else jnp.full(d.shape[:1], t - 1)
    index = jnp.clip(offset - 1, 0, d.shape[1] - 1)[:, None]
    return {'score': jnp.take_along_axis(d, index, axis=1)[:, 0]}


def _plain(cfg):
  return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
