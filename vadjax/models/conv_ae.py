"""Convolutional autoencoders: BCAE1 and its attention variants (seed 001), the deep AE and
its attention variants (seed 000).

Attention variants add an `attention` output: a dict of maps (B, h, w) that the report draws.
Input soft attention (SA-CAE) adds a `regularizer` (B,) that the methods add to the loss.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vadjax.models import MODELS
from vadjax.nn import Conv, ConvTranspose, batch_norm, check_input, conv_bn
from vadjax.nn.layers import output
from vadjax.nn.attention import CBAM, AugmentedConv, InputAttention, PayAttention, SqueezeExcite


def valid_out(size: int, kernel: int, stride: int) -> int:
  return (size - kernel) // stride + 1


def bcae1_geometry(size) -> tuple[list, tuple, list]:
  """BCAE1's shapes for an input of `size` (h, w): the encoder's map sizes (input first),
  its last kernel (4 at 128×128, smaller maps take the map), and the decoder's (kernel,
  stride) per layer: each transposed conv restores the size of the encoder level it
  mirrors, 3 wide or 4 where one more row is needed (no output pixel without input)."""
  sizes = [tuple(size)]
  for _ in range(4):
    sizes.append(tuple(valid_out(s, 3, 2) for s in sizes[-1]))
  last_k = tuple(min(4, s) for s in sizes[-1])
  sizes.append(tuple(valid_out(s, k, 1) for s, k in zip(sizes[-1], last_k)))
  decoder, current = [(last_k, 1)], sizes[4]
  for level in range(3, -1, -1):
    decoder.append((tuple(t - 2 * (c - 1) for t, c in zip(sizes[level], current)), 2))
    current = sizes[level]
  return sizes, last_k, decoder


def _with_maps(out: dict, maps: dict) -> dict:
  if maps:
    out['attention'] = {k: v.astype(jnp.float32) for k, v in maps.items()}
  return out


@MODELS.register('bcae1')
class BCAE1(nn.Module):
  """BCAE1, seed 001 (001_22531b3c5af6eb6c.txt) §4.4.2.

  Encoder: four 3×3 stride-2 valid convs (64, 64, 64, 96) with BN + ReLU, then a stride-1
  valid conv to 96 channels whose kernel is 4×4 (the reference code's layer: 7×7 → 4×4 at a
  128×128 input, so the embedding is 96·4·4 = 1536). At other input sizes the last kernel is
  min(4, remaining size), so any input ≥ 31×31 works.
  Decoder: the mirror: every transposed conv restores its encoder twin's input size. A
  stride-2 layer has a 3×3 kernel, or 4 wide along an axis whose size needs one more row
  (128 ← 63): output padding would leave that row with no input at all, only the bias. The
  reference code also uses k4 s2 layers but overshoots to 130×130 and crops with an extra
  3×3 conv; the paper has 5 transposed convs, as here. Channels
  96, 64, 64, 64, C (each transposed conv outputs its encoder twin's input channels), BN +
  LeakyReLU 0.2 (the paper; the code's slope is 0.01 = `leaky_slope`), sigmoid output.
  `embedding_activation`: 'relu' (paper: BN + ReLU on every encoder layer) or 'tanh' (code).

  Seed 001's attention variants (§3.5, §4.7) are fields of the same module:
  `attention='se'` (SE-CAE: squeeze-excitation after encoder layers 1–4 and decoder layers
  1–4, as the code), `attention='aa'` (AA-CAE: every encoder conv an attention-augmented
  conv, d_k = ⌊C/8⌋ (`aa_key_ratio`), d_v = 1, one head, as the code), and
  `input_attention='sa' | 'ssa'` (SA-CAE / SSA-CAE: the input soft-attention block before
  the AE). See `vadjax.nn.attention`.
  """
  channels: int = 1
  filters: Sequence[int] = (64, 64, 64, 96, 96)
  leaky_slope: float = 0.2
  embedding_activation: str = 'relu'
  attention: str = 'none'        # 'none' | 'se' | 'aa'
  input_attention: str = 'none'  # 'none' | 'sa' | 'ssa'
  se_reduction: int = 16
  aa_key_ratio: float = 0.125
  aa_value_depth: int = 1
  aa_heads: int = 1
  sa_hidden: int = 64
  sa_penalty: float = 1e-6
  sa_form: str = 'paper'         # 'paper' (eq. 3.11) | 'code'
  conv_impl: str = 'auto'        # stride-2 layers: 'xla' | 's2d' | 'auto' (vadjax.nn.layers)
  dtype: Any = jnp.float32

  def _encoder_conv(self, h, features, kernel, stride, name, maps, bn=None):
    """The encoder's conv `name`, then `bn` if given."""
    if self.attention == 'aa':
      h, received = AugmentedConv(
          features, kernel, stride, 0, key_depth=max(int(features * self.aa_key_ratio), 1),
          value_depth=self.aa_value_depth, heads=self.aa_heads, conv_impl=self.conv_impl,
          dtype=self.dtype, name=name)(h)
      maps[name] = received
      return h if bn is None else bn(h)
    conv = Conv(features, kernel, stride, 0, impl=self.conv_impl, dtype=self.dtype, name=name)
    return conv(h) if bn is None else conv_bn(conv, bn, h)

  def _se(self, h, name):
    if self.attention == 'se':
      return SqueezeExcite(self.se_reduction, self.dtype, name=name)(h)
    return h

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_input(x, self.channels, 'bcae1', min_size=31)
    if self.attention not in ('none', 'se', 'aa'):
      raise ValueError(f"attention must be 'none', 'se' or 'aa', got {self.attention!r}")
    maps, extra = {}, {}
    if self.input_attention != 'none':
      x, maps['input'], extra['regularizer'] = InputAttention(
          self.input_attention, self.sa_hidden, penalty=self.sa_penalty, sa_form=self.sa_form,
          dtype=self.dtype, name='input_attention')(x.astype(self.dtype), train)
    _, last_k, decoder = bcae1_geometry(x.shape[1:3])

    if self.embedding_activation not in ('relu', 'tanh'):
      raise ValueError(f'embedding_activation must be relu or tanh, got '
                       f'{self.embedding_activation!r}')
    h = x.astype(self.dtype)
    for i, f in enumerate(self.filters[:4]):
      h = nn.relu(self._encoder_conv(h, f, 3, 2, f'enc{i}', maps,
                                     batch_norm(train, self.dtype, f'enc{i}_bn')))
      h = self._se(h, f'enc{i}_se')
    if self.embedding_activation == 'tanh':
      h = jnp.tanh(self._encoder_conv(h, self.filters[4], last_k, 1, 'enc4', maps))
    else:
      h = nn.relu(self._encoder_conv(h, self.filters[4], last_k, 1, 'enc4', maps,
                                     batch_norm(train, self.dtype, 'enc4_bn')))
    latent = h

    out_channels = list(self.filters[3::-1]) + [self.channels]   # 96, 64, 64, 64, C
    for i, (f, (k, s)) in enumerate(zip(out_channels, decoder)):
      conv = ConvTranspose(f, k, s, 0, impl=self.conv_impl, dtype=self.dtype, name=f'dec{i}')
      if i == 4:
        h = conv(h)
      else:
        h = nn.leaky_relu(conv_bn(conv, batch_norm(train, self.dtype, f'dec{i}_bn'), h),
                          negative_slope=self.leaky_slope)
        h = self._se(h, f'dec{i}_se')
    recon = nn.sigmoid(output(h))
    return _with_maps({'recon': recon, 'latent': output(latent.reshape(latent.shape[0], -1)),
                       **extra}, maps)


@MODELS.register('se_cae')
class SECAE(BCAE1):
  """SE-CAE: BCAE1 with squeeze-excitation (seed 001 §3.5.2, §4.7)."""
  attention: str = 'se'


@MODELS.register('aa_cae')
class AACAE(BCAE1):
  """AA-CAE: BCAE1 with attention-augmented encoder convs (seed 001 §3.5.2, §4.7)."""
  attention: str = 'aa'


@MODELS.register('sa_cae')
class SACAE(BCAE1):
  """SA-CAE: BCAE1 behind the input soft-attention block, eq. 3.11 (seed 001 §3.5.3)."""
  input_attention: str = 'sa'


@MODELS.register('ssa_cae')
class SSACAE(BCAE1):
  """SSA-CAE: BCAE1 behind the softmax input soft-attention block, eq. 3.12 (§3.5.3)."""
  input_attention: str = 'ssa'


@MODELS.register('deep_ae')
class DeepAE(nn.Module):
  """The baseline deep autoencoder of seed 000 (000_a976e3abf5973a77.txt) §3.3.1.

  Encoder: five blocks Conv 3×3 (padding 1) → BN → LeakyReLU 0.2. The seed's channel figure
  did not survive; we use the doubling schedule 8, 16, 32, 64, 128 with strides 1, 2, 2, 2, 1
  so a 32×32 input ends at 4·4·128 = 2048 features, the seed's bottleneck input.
  Bottleneck: four fully connected layers with ReLU between them (2048 → 512 → 128 → 512 →
  2048; the 128 features are the latent). Decoder: five transposed-conv blocks mirroring the
  encoder; the last has no BN and no activation (the seed keeps raw reconstruction values).
  Works at any input size divisible by 8.

  Seed 000's attention variants are fields of the same module (blocks counted from 1):
  `attention='cbam'` (CBAM-AE, §3.3.2: CBAM after encoder blocks 2 and 4) and
  `attention='ltpa'` (LTPA-AE, §3.3.3: blocks 2 and 4 are local descriptors, the encoder's
  output, average-pooled, the global one; `compatibility` 'pc' or 'dp'). The seed says the
  attended vectors are "concatenated and fed into the bottleneck"; we concatenate them to the
  flattened encoder output the baseline's bottleneck already takes (2048 + 16 + 64 inputs),
  so LTPA-AE adds attention to the baseline instead of replacing its spatial code.
  """
  channels: int = 1
  filters: Sequence[int] = (8, 16, 32, 64, 128)
  strides: Sequence[int] = (1, 2, 2, 2, 1)
  fc_features: Sequence[int] = (512, 128, 512)
  attention: str = 'none'        # 'none' | 'cbam' | 'ltpa'
  compatibility: str = 'pc'      # LTPA: 'pc' | 'dp'
  attention_blocks: Sequence[int] = (2, 4)
  conv_impl: str = 'auto'        # stride-2 layers: 'xla' | 's2d' | 'auto' (vadjax.nn.layers)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_input(x, self.channels, 'deep_ae', min_size=8)
    down = 1
    for s in self.strides:
      down *= s
    if x.shape[1] % down or x.shape[2] % down:
      raise ValueError(f'deep_ae needs height and width divisible by {down}, got '
                       f'{tuple(x.shape[1:3])}; set image_size to a multiple of {down}')
    if self.attention not in ('none', 'cbam', 'ltpa'):
      raise ValueError(f"attention must be 'none', 'cbam' or 'ltpa', got {self.attention!r}")
    h = x.astype(self.dtype)
    maps, locals_ = {}, []
    for i, (f, s) in enumerate(zip(self.filters, self.strides)):
      h = conv_bn(Conv(f, 3, s, 1, impl=self.conv_impl, dtype=self.dtype, name=f'enc{i}'),
                  batch_norm(train, self.dtype, f'enc{i}_bn'), h)
      h = nn.leaky_relu(h, negative_slope=0.2)
      if i + 1 in self.attention_blocks and self.attention == 'cbam':
        h, maps[f'cbam{i + 1}'] = CBAM(dtype=self.dtype, name=f'cbam{i + 1}')(h, train)
      elif i + 1 in self.attention_blocks and self.attention == 'ltpa':
        locals_.append((i + 1, h))
    shape = h.shape
    z = h.reshape(shape[0], -1)
    if locals_:
      g = jnp.mean(h, axis=(1, 2))
      attended = []
      for block, local in locals_:
        a, maps[f'ltpa{block}'] = PayAttention(self.compatibility, self.dtype,
                                               name=f'ltpa{block}')(local, g)
        attended.append(a)
      z = jnp.concatenate([z, *attended], axis=-1)
    widths = list(self.fc_features) + [z.shape[-1]]
    latent = None
    widths[-1] = int(shape[1] * shape[2] * shape[3])
    for i, w in enumerate(widths):
      z = nn.Dense(w, dtype=self.dtype, name=f'fc{i}')(z)
      if i < len(widths) - 1:
        z = nn.relu(z)
      if i == len(self.fc_features) // 2:
        latent = z
    h = z.reshape(shape)
    out_channels = list(self.filters[-2::-1]) + [self.channels]
    for i, (f, s) in enumerate(zip(out_channels, self.strides[::-1])):
      conv = ConvTranspose(f, 3, s, 1, s - 1, impl=self.conv_impl, dtype=self.dtype,
                           name=f'dec{i}')
      if i == len(out_channels) - 1:
        h = conv(h)
      else:
        h = nn.leaky_relu(conv_bn(conv, batch_norm(train, self.dtype, f'dec{i}_bn'), h),
                          negative_slope=0.2)
    return _with_maps({'recon': output(h), 'latent': output(latent)}, maps)


@MODELS.register('cbam_ae')
class CBAMAE(DeepAE):
  """CBAM-AE (seed 000 §3.3.2): the deep AE with CBAM after encoder blocks 2 and 4."""
  attention: str = 'cbam'


@MODELS.register('ltpa_ae')
class LTPAAE(DeepAE):
  """LTPA-AE (seed 000 §3.3.3): the deep AE with "learn to pay attention" on blocks 2, 4."""
  attention: str = 'ltpa'
