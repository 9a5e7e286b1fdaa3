"""BCAE2 and the kernel-strengthened KS-CAE (seed 001, 001_22531b3c5af6eb6c.txt §3.3, §4.5).

BCAE2, in the layout of the seed's code (Fig. 4.1 did not survive as text): encoder valid
convs (k, s) = (3,2), (3,2), (5,3), (5,2), (3,2) to 64, 128, 256, 512, 300 channels with BN +
ReLU, so 128×128 → 63 → 31 → 9 → 3 → 1 and the embedding is 1×300; decoder transposed convs
(3,2), (5,2), (5,3), (5,2), (5,2) to 512, 256, 128, 64, 16 with BN + LeakyReLU 0.2
(1 → 3 → 9 → 29 → 61 → 125), then (4,1) to C with a sigmoid (→ 128). At other sizes the last
kernel is whatever restores the input size; the layout needs inputs of at least ~120 pixels.

KS-CAE replaces the first 4 convs and the last 4 transposed convs by ACB / ADB blocks
(`vadjax.nn.acb`) and, "to show the efficiency of kernel strengthening", uses half the
kernels: the seed says "in the middle layers"; we halve every layer but the 300-wide
embedding and the C-channel output (`width=0.5`). `block='fused'` is the same network after
`fuse_ks_cae`: every block one plain k×k layer with its BNs folded into a bias.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vadjax.models import MODELS
from vadjax.models.conv_ae import valid_out
from vadjax.nn import Conv, ConvTranspose, batch_norm, check_input, conv_bn
from vadjax.nn.acb import AsymmetricBlock, fuse

ENCODER = ((3, 2), (3, 2), (5, 3), (5, 2), (3, 2))
DECODER = ((3, 2), (5, 2), (5, 3), (5, 2), (5, 2))
BLOCKS = ('plain', 'acb', 'fused')


def last_kernel(size) -> tuple:
  """The output layer's kernel per axis: what brings the decoder's map back to `size`."""
  out = []
  for n in size:
    m = n
    for k, s in ENCODER:
      m = valid_out(m, k, s)
    for k, s in DECODER:
      m = (m - 1) * s + k
    out.append(n - m + 1)
  return tuple(out)


@MODELS.register('bcae2')
class BCAE2(nn.Module):
  """BCAE2 (`block='plain'`); KS-CAE with `block='acb'` or `'fused'` (see module doc)."""
  channels: int = 1
  filters: Sequence[int] = (64, 128, 256, 512, 300)
  decoder_filters: Sequence[int] = (512, 256, 128, 64, 16)
  width: float = 1.0             # multiplies every layer but the embedding and the output
  block: str = 'plain'           # 'plain' | 'acb' | 'fused'
  strengthened: int = 4          # ACB layers at the start, ADB layers at the end
  leaky_slope: float = 0.2
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  def _layer(self, h, features, k, s, name, transposed, train, norm):
    acb = self.block != 'plain' and (
        (not transposed and int(name[3:]) < self.strengthened) or
        (transposed and int(name[3:]) >= len(DECODER) + 1 - self.strengthened))
    if acb and self.block == 'acb':
      if not isinstance(k, int):
        raise ValueError(f'ks_cae needs square inputs (its layer {name} would have kernel {k})')
      return AsymmetricBlock(features, k, s, transposed=transposed, norm=norm,
                             impl=self.conv_impl, dtype=self.dtype, name=name)(h, train)
    layer = ConvTranspose if transposed else Conv
    conv = layer(features, k, s, 0, impl=self.conv_impl, dtype=self.dtype, name=name)
    if norm and not acb:          # fused blocks carry their BN in the bias
      return conv_bn(conv, batch_norm(train, self.dtype, f'{name}_bn'), h)
    return conv(h)

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.block not in BLOCKS:
      raise ValueError(f'block must be one of {BLOCKS}, got {self.block!r}')
    check_input(x, self.channels, 'bcae2 / ks_cae', min_size=119)
    scale = lambda f: max(int(round(f * self.width)), 1)   # noqa: E731
    enc = [scale(f) for f in self.filters[:-1]] + [self.filters[-1]]
    dec = [scale(f) for f in self.decoder_filters]
    h = x.astype(self.dtype)
    for i, ((k, s), f) in enumerate(zip(ENCODER, enc)):
      h = nn.relu(self._layer(h, f, k, s, f'enc{i}', False, train, True))
    latent = h
    for i, ((k, s), f) in enumerate(zip(DECODER, dec)):
      h = self._layer(h, f, k, s, f'dec{i}', True, train, True)
      h = nn.leaky_relu(h, negative_slope=self.leaky_slope)
    last = last_kernel(x.shape[1:3])
    if min(last) < 1:
      raise ValueError(f'bcae2 decodes to {h.shape[1:3]}, larger than the input {x.shape[1:3]}')
    h = self._layer(h, self.channels, last if last[0] != last[1] else last[0], 1,
                    f'dec{len(DECODER)}', True, train, False)
    return {'recon': nn.sigmoid(h.astype(jnp.float32)),
            'latent': latent.reshape(latent.shape[0], -1).astype(jnp.float32)}


@MODELS.register('ks_cae')
class KSCAE(BCAE2):
  """KS-CAE (seed 001 §4.5): BCAE2 with ACB/ADB blocks and half the kernels."""
  width: float = 0.5
  block: str = 'acb'


def fuse_ks_cae(variables: dict) -> dict:
  """Variables of a `block='acb'` model → those of the same model with `block='fused'`."""
  params, stats = dict(variables['params']), dict(variables.get('batch_stats', {}))
  for name in [n for n, p in params.items() if 'square' in p]:
    block_stats = stats.pop(name, {})
    params[name] = fuse(params[name], block_stats)
  return {'params': params, 'batch_stats': stats}
