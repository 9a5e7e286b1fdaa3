"""MemAE: memory-augmented autoencoders (seed 003, 003_5d307d41a5bbbd0c.txt; METHODS.md §4).

The encoder's output is a grid of queries; the memory module (`vadjax.nn.memory`) replaces
each by a sparse mix of learned memory items; the decoder reconstructs from the mix.
`use_memory=False` gives the plain AE of seed 003's ablation from the same code, and
`shrink_ratio=0` gives MemAE-nonSpar.

The shrinkage threshold is set relative to the memory size: λ = shrink_ratio / N. The paper
puts λ in [1/N, 3/N]; the default ratio 1 is its lower end. A fixed λ does not carry over
across N with cosine addressing: softmax over cosines in [−1, 1] gives every item a weight
near 1/N, so the official code's λ = 0.0025 (its dot product, N = 2000: ratio 5) would zero
every weight of a cosine memory with N = 2000 and read only zeros.

- `memae_2d` (one-class image protocol): the seed text does not give the 2D layers; we use
  the MemAE paper's MNIST layout Conv(k1,s2,16)–Conv(k3,s2,32)–Conv(k3,s2,64), mirrored by
  stride-2 transposed convs (k3, p1, output padding 1), N = 100 memory items.
- `memae_3d` (16-frame clips): the official code's AutoEncoderCov3DMem: Conv3D k3 p1,
  1→96 stride (1,2,2), 96→128, 128→256, 256→256 stride 2; decoder mirrored with transposed
  Conv3D (output padding 1); N = 2000, so a 16×256×256 clip gives 2·16·16 = 512 queries.
Both: BN + LeakyReLU 0.2 after every layer but the last. The code's last layer is linear on
inputs in [−1, 1]; ours are in [0, 1], so the output is a sigmoid by default
(`output_activation='none'` for the code's form).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vadjax.models import MODELS
from vadjax.nn import Conv, Conv3D, ConvTranspose, ConvTranspose3D, Memory, batch_norm, conv_bn
from vadjax.registry import UserError


def _act(conv, h, train, dtype, name):
  """LeakyReLU(BN(conv(h))), BN `name`."""
  return nn.leaky_relu(conv_bn(conv, batch_norm(train, dtype, name), h), negative_slope=0.2)


class _Encoder2D(nn.Module):
  filters: Sequence[int]
  kernels: Sequence[int]
  conv_impl: str
  dtype: Any

  @nn.compact
  def __call__(self, x, train):
    h = x.astype(self.dtype)
    for i, (f, k) in enumerate(zip(self.filters, self.kernels)):
      conv = Conv(f, k, 2, k // 2, impl=self.conv_impl, dtype=self.dtype, name=f'enc{i}')
      h = _act(conv, h, train, self.dtype, f'enc{i}_bn')
    return h


class _Decoder2D(nn.Module):
  filters: Sequence[int]
  channels: int
  conv_impl: str
  dtype: Any

  @nn.compact
  def __call__(self, h, train):
    outs = list(self.filters[-2::-1]) + [self.channels]
    for i, f in enumerate(outs):
      conv = ConvTranspose(f, 3, 2, 1, 1, impl=self.conv_impl, dtype=self.dtype, name=f'dec{i}')
      h = _act(conv, h, train, self.dtype, f'dec{i}_bn') if i < len(outs) - 1 else conv(h)
    return h


class _Encoder3D(nn.Module):
  filters: Sequence[int]
  strides: Sequence[Sequence[int]]
  conv_impl: str
  dtype: Any

  @nn.compact
  def __call__(self, x, train):
    h = x.astype(self.dtype)
    for i, (f, s) in enumerate(zip(self.filters, self.strides)):
      conv = Conv3D(f, (3, 3, 3), tuple(s), (1, 1, 1), self.conv_impl, self.dtype,
                    name=f'enc{i}')
      h = _act(conv, h, train, self.dtype, f'enc{i}_bn')
    return h


class _Decoder3D(nn.Module):
  filters: Sequence[int]
  strides: Sequence[Sequence[int]]
  channels: int
  conv_impl: str
  dtype: Any

  @nn.compact
  def __call__(self, h, train):
    outs = list(self.filters[-2::-1]) + [self.channels]
    for i, (f, s) in enumerate(zip(outs, self.strides[::-1])):
      op = tuple(int(v > 1) for v in s)
      conv = ConvTranspose3D(f, (3, 3, 3), tuple(s), (1, 1, 1), op, self.conv_impl, self.dtype,
                             name=f'dec{i}')
      h = _act(conv, h, train, self.dtype, f'dec{i}_bn') if i < len(outs) - 1 else conv(h)
    return h


class _MemAE(nn.Module):
  """Shared body: encoder → memory → decoder. Subclasses set the layers."""

  def _check(self, x, rank, down, layout):
    ok = x.ndim == rank and x.shape[-1] == self.channels and all(
        n % d == 0 and n >= d for n, d in zip(x.shape[1:-1], down))
    if not ok:
      raise UserError(f'{self.model_name} expects {layout} with C={self.channels} and sizes '
                      f'divisible by {tuple(down)}, got shape {tuple(x.shape)}; check the '
                      f'dataset channels, image_size (and clip_length) in the config')

  def setup(self):
    self.encoder, self.decoder = self.make_layers()
    if self.use_memory:
      self.memory = Memory(self.memory_items, self.similarity, self.normalize,
                           self.shrink_ratio / self.memory_items, dtype=self.dtype,
                           name='memory')

  def _output(self, h):
    h = h.astype(jnp.float32)
    if self.output_activation == 'sigmoid':
      return nn.sigmoid(h)
    if self.output_activation == 'none':
      return h
    raise UserError(f'output_activation must be sigmoid or none, got '
                    f'{self.output_activation!r}')

  def __call__(self, x, train: bool = False):
    self.check(x)
    z = self.encoder(x, train)
    out = {'latent': z.reshape(z.shape[0], -1).astype(jnp.float32)}
    if self.use_memory:
      z, w = self.memory(z)
      out['memory_weights'] = w
    out['recon'] = self._output(self.decoder(z, train))
    return out

  def decode_items(self, grid_shape, count: int = 100):
    """Decodes each of the first `count` memory items alone, placed at every query position
    (seed 003's "decoded single memory item" figure): (count, *frame shape)."""
    m = self.memory.variables['params']['memory'][:count]
    z = jnp.broadcast_to(m.reshape(m.shape[0], *(1,) * len(grid_shape), m.shape[1]),
                         (m.shape[0], *grid_shape, m.shape[1]))
    return self._output(self.decoder(z.astype(self.dtype), False))


@MODELS.register('memae_2d')
class MemAE2D(_MemAE):
  """MemAE for images (NHWC); see the module docstring."""
  channels: int = 1
  filters: Sequence[int] = (16, 32, 64)
  kernels: Sequence[int] = (1, 3, 3)
  use_memory: bool = True
  memory_items: int = 100
  similarity: str = 'cosine'
  normalize: str = 'softmax'
  shrink_ratio: float = 1.0            # λ·N (module docstring)
  output_activation: str = 'sigmoid'
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32
  model_name = 'memae_2d'

  def make_layers(self):
    return (_Encoder2D(self.filters, self.kernels, self.conv_impl, self.dtype, name='encoder'),
            _Decoder2D(self.filters, self.channels, self.conv_impl, self.dtype, name='decoder'))

  def check(self, x):
    down = 2 ** len(self.filters)
    self._check(x, 4, (down, down), '(batch, height, width, C) images')


@MODELS.register('memae_3d')
class MemAE3D(_MemAE):
  """MemAE for clips (NTHWC), the official code's Conv3D AE; see the module docstring."""
  channels: int = 1
  filters: Sequence[int] = (96, 128, 256, 256)
  strides: Sequence[Sequence[int]] = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))
  use_memory: bool = True
  memory_items: int = 2000
  similarity: str = 'cosine'
  normalize: str = 'softmax'
  shrink_ratio: float = 1.0            # λ·N (module docstring)
  output_activation: str = 'sigmoid'
  conv_impl: str = 'auto'      # the 2D convs the 3D layers fold into (vadjax.nn.layers)
  dtype: Any = jnp.float32
  model_name = 'memae_3d'

  def make_layers(self):
    return (_Encoder3D(self.filters, self.strides, self.conv_impl, self.dtype, name='encoder'),
            _Decoder3D(self.filters, self.strides, self.channels, self.conv_impl, self.dtype,
                       name='decoder'))

  def check(self, x):
    down = [1, 1, 1]
    for s in self.strides:
      down = [d * v for d, v in zip(down, s)]
    self._check(x, 5, down, '(batch, time, height, width, C) clips')
