"""Next-feature predictors over a clip of frame features (seed 004: an LSTM predicts the
next frame's DINO vector from the previous ones; its future work: a Transformer over the
sequence of feature vectors).

Input: clips of feature vectors (B, T, 1, 1, D) (vadjax/methods/feature_cache.py). Every position
t < T − 1 predicts vector t + 1 from vectors 0..t (an LSTM by construction, the Transformer
by a causal mask), so one clip trains T − 1 predictions. Returns {'prediction': (B, T−1, D),
'target': the vectors 1..T−1, 'latent': the state after the last input}.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vadjax.models import MODELS
from vadjax.registry import UserError

PREDICTORS = ('lstm', 'transformer')


class CausalBlock(nn.Module):
  dim: int
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h, mask):
    y = nn.LayerNorm(dtype=self.dtype)(h)
    h = h + nn.MultiHeadDotProductAttention(self.heads, dtype=self.dtype)(y, y, mask=mask)
    y = nn.LayerNorm(dtype=self.dtype)(h)
    y = nn.Dense(self.dim, dtype=self.dtype)(nn.gelu(nn.Dense(4 * self.dim,
                                                              dtype=self.dtype)(y)))
    return h + y


@MODELS.register('feature_predictor')
class FeaturePredictor(nn.Module):
  channels: int = 384              # D, the feature size
  predictor: str = 'lstm'
  hidden: int = 256                # LSTM state / Transformer width
  layers: int = 1
  heads: int = 4
  max_length: int = 64             # Transformer position embeddings
  dtype: Any = jnp.float32
  conv_impl: str = 'auto'          # (no convolutions; accepted like every model's)

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    if x.ndim != 5 or x.shape[2:4] != (1, 1) or x.shape[-1] != self.channels or x.shape[1] < 2:
      raise UserError(f'feature_predictor expects clips of feature vectors (batch, T >= 2, '
                      f'1, 1, {self.channels}); got {tuple(x.shape)}')
    if self.predictor not in PREDICTORS:
      raise UserError(f'model_kwargs.predictor must be one of {PREDICTORS}, got '
                      f'{self.predictor!r}')
    seq = x[:, :, 0, 0, :].astype(jnp.float32)
    h = seq[:, :-1].astype(self.dtype)
    if self.predictor == 'lstm':
      for i in range(self.layers):
        h = nn.RNN(nn.OptimizedLSTMCell(self.hidden, dtype=self.dtype, name=f'lstm{i}'))(h)
    else:
      t = h.shape[1]
      if t > self.max_length:
        raise UserError(f'clips of {t + 1} vectors exceed model_kwargs.max_length + 1')
      pos = self.param('pos_embed', nn.initializers.normal(0.02), (self.max_length,
                                                                     self.hidden))
      h = nn.Dense(self.hidden, dtype=self.dtype, name='embed')(h) + pos[:t].astype(self.dtype)
      mask = nn.make_causal_mask(jnp.ones(h.shape[:2]))
      for i in range(self.layers):
        h = CausalBlock(self.hidden, self.heads, self.dtype, name=f'block{i}')(h, mask)
      h = nn.LayerNorm(dtype=self.dtype, name='norm')(h)
    pred = nn.Dense(self.channels, dtype=self.dtype, name='out')(h).astype(jnp.float32)
    return {'prediction': pred, 'target': seq[:, 1:], 'latent': h[:, -1].astype(jnp.float32)}
