"""ADACL's regressor (seed 002, 002_437da2b4a4748de8.txt §4.3.2, §4.4): four convs, global
max pooling, two fully connected layers, one output with no activation.

Widths and strides are not given; ours keep it under the thesis' 300k parameters (249k for
one channel, `count_params`): 3×3 convs 32, 64, 128, 128 (stride 2 but the last, padding 1)
each with BatchNorm + ReLU, global max pooling, FC 64 + ReLU, FC 1. Output `prediction`
(B,) is the raw value: the method clips it to [0, 1] for the score (or applies a sigmoid
with the BCE option); `latent` is the 64-d feature of the first FC layer (Fig. 4.6).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vadjax.models import MODELS
from vadjax.nn import Conv, batch_norm, check_input, conv_bn

MAX_PARAMS = 300_000


@MODELS.register('adacl_cnn')
class ADACLRegressor(nn.Module):
  channels: int = 1
  filters: Sequence[int] = (32, 64, 128, 128)
  hidden: int = 64
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_input(x, self.channels, 'adacl_cnn', min_size=8)
    h = x.astype(self.dtype)
    for i, f in enumerate(self.filters):
      stride = 2 if i < len(self.filters) - 1 else 1
      conv = Conv(f, 3, stride, 1, impl=self.conv_impl, dtype=self.dtype, name=f'enc{i}')
      h = nn.relu(conv_bn(conv, batch_norm(train, self.dtype, f'enc{i}_bn'), h))
    h = jnp.max(h, axis=(1, 2))
    feature = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc0')(h))
    out = nn.Dense(1, dtype=self.dtype, name='fc1')(feature)
    return {'prediction': out[:, 0].astype(jnp.float32),
            'latent': feature.astype(jnp.float32)}


def count_params(channels: int = 1, size: int = 32, **kwargs) -> int:
  model = ADACLRegressor(channels=channels, **kwargs)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, size, size, channels)))['params']
  return sum(int(jnp.prod(jnp.array(p.shape))) for p in jax.tree.leaves(shapes))
