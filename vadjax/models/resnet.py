"""ResNet-50 in torchvision's layout (He et al. 2016; torchvision's "v1.5": the stride of a
bottleneck sits on its 3×3 conv), the feature baseline of seed 004 (its ResNet-50 features,
AUC 70.98 on UCSD Ped2 against DINO's 88.54).

Inference only: BatchNorm always uses its running statistics (a frozen feature extractor),
so the features of a frame do not depend on the rest of its batch. Module names follow
torchvision's state-dict keys (`layer1_0.conv1` ↔ `layer1.0.conv1`), so its checkpoints load
by name (vadjax/models/checkpoints.py). `resnet_mini` (one bottleneck per stage, width 16,
512-d features) is the CPU-sized variant for tests.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vadjax.models import BACKBONES
from vadjax.nn.layers import Conv, batch_norm
from vadjax.registry import UserError


class Bottleneck(nn.Module):
  width: int
  stride: int
  downsample: bool
  impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    bn = lambda name: batch_norm(False, self.dtype, name)
    conv = functools.partial(Conv, use_bias=False, impl=self.impl, dtype=self.dtype)
    h = nn.relu(bn('bn1')(conv(self.width, 1, name='conv1')(x)))
    h = nn.relu(bn('bn2')(conv(self.width, 3, self.stride, 1, name='conv2')(h)))
    h = bn('bn3')(conv(4 * self.width, 1, name='conv3')(h))
    if self.downsample:
      x = bn('downsample_1')(conv(4 * self.width, 1, self.stride, name='downsample_0')(x))
    return nn.relu(h + x)


class ResNet(nn.Module):
  """x (B, H, W, C) → {'tokens': (B, h·w, 4·widths[-1]) the last stage's map,
  'latent': its global average (torchvision's pooled features, 2048-d for ResNet-50)}."""
  blocks: Sequence[int] = (3, 4, 6, 3)
  width: int = 64
  channels: int = 3
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train                                 # always inference-mode BatchNorm
    if x.ndim != 4 or x.shape[-1] != self.channels or min(x.shape[1:3]) < 32:
      raise UserError(f'ResNet expects images (batch, height, width, {self.channels}) with '
                      f'sides >= 32; got {tuple(x.shape)}')
    h = Conv(self.width, 7, 2, 3, use_bias=False, impl=self.conv_impl, dtype=self.dtype,
             name='conv1')(x.astype(self.dtype))
    h = nn.relu(batch_norm(False, self.dtype, 'bn1')(h))
    h = nn.max_pool(h, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for stage, n in enumerate(self.blocks):
      for j in range(n):
        stride = 2 if stage > 0 and j == 0 else 1
        h = Bottleneck(self.width * 2 ** stage, stride, j == 0, self.conv_impl, self.dtype,
                       name=f'layer{stage + 1}_{j}')(h)
    h = h.astype(jnp.float32)
    return {'tokens': h.reshape(h.shape[0], -1, h.shape[-1]), 'latent': jnp.mean(h, (1, 2))}


BACKBONES.register('resnet50')(ResNet)
BACKBONES.register('resnet_mini')(functools.partial(ResNet, blocks=(1, 1, 1, 1), width=16))
