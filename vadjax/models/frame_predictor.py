"""A small U-Net next-frame predictor for few-shot scene adaptation (seed 000 §2.2; Lu et al.,
ECCV 2020, meta-train a U-Net frame generator).

t frames (B, t, H, W, C) → frame t + 1 (B, H, W, C) in [0, 1]. The frames are stacked on
channels; each level is two 3×3 conv + GroupNorm + ReLU blocks; down by 2×2 max pooling, up
by nearest-neighbour doubling and a conv (no transposed convs: their gradients are slow
on XLA:CPU, and MAML differentiates the gradient). GroupNorm, not BatchNorm: it keeps no
running statistics, so a model is a pure function of its parameters and the inner loop of
MAML, vmapped over tasks, needs no per-task batch statistics.

`conv_impl` picks the convolutions' form (vadjax.nn.layers.resolve_impl): 'gemm' (one
matmul on the patch matrix) is what second-order MAML uses on CPU, where differentiating
XLA's kernel gradient gives convolutions with image-sized windows
(`vadjax.methods.maml.conv_impl`).
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from vadjax.nn import Conv


class UNetPredictor(nn.Module):
  channels: int = 1
  features: Sequence[int] = (16, 32, 64)
  groups: int = 4
  conv_impl: str = 'auto'

  def _conv(self, h, f: int, k: int, name: str):
    return Conv(f, k, 1, k // 2, impl=self.conv_impl, name=name)(h)    # 'SAME'

  def _block(self, h, f: int, name: str):
    for j in range(2):
      h = self._conv(h, f, 3, f'{name}_conv{j}')
      h = nn.relu(nn.GroupNorm(min(self.groups, f), name=f'{name}_gn{j}')(h))
    return h

  @nn.compact
  def __call__(self, x):
    b, t, hgt, wid, c = x.shape
    levels = len(self.features)
    if hgt % 2 ** (levels - 1) or wid % 2 ** (levels - 1) or c != self.channels:
      raise ValueError(f'frame predictor: frames of {self.channels} channels with sides '
                       f'divisible by {2 ** (levels - 1)}; got {x.shape}')
    h = jnp.moveaxis(x, 1, 3).reshape(b, hgt, wid, t * c)
    skips = []
    for i, f in enumerate(self.features):
      h = self._block(h, f, f'down{i}')
      if i < levels - 1:
        skips.append(h)
        h = nn.max_pool(h, (2, 2), (2, 2))
    for i in reversed(range(levels - 1)):
      h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
      h = self._conv(h, self.features[i], 3, f'up{i}')
      h = self._block(jnp.concatenate([h, skips[i]], axis=-1), self.features[i], f'dec{i}')
    return nn.sigmoid(self._conv(h, self.channels, 1, 'out'))
