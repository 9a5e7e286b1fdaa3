"""Convolutional recurrent autoencoders: {CRNN, CLSTM, CGRU} × {AE, bidirectional AE,
Seq2Seq} × L_R × DUT (seed 001, 001_22531b3c5af6eb6c.txt §3.7.3–3.7.5, §4.9, Tabs. 4.10,
4.12; METHODS.md §2).

Five encoder layers (filters 64, 64, 64, 96, 96; 3×3, stride 2 with padding 1, the last
stride 1: 128 → 64 → 32 → 16 → 8 → 8) and five decoder layers, the mirror (96, 64, 64, 64, C;
the first stride 1, then 3×3 stride-2 transposed convs with padding 1 and output padding 1
back to 128). Layers are time-distributed 2D convs except:
  encoder  the last L_R layers (`recurrent_layers`), recurrent cells;
  decoder  with DUT = N (`recurrent_decoder=True`) its first L_R layers, transposed
           recurrent cells; with DUT = Y (False) all time-distributed transposed convs.
This placement, with 3×3 kernels throughout and the ConvRNN's output conv W_o, reproduces
Tab. 4.12's parameter counts and their order (`experiments/param_table.py` prints ours
beside the seed's; the table counts the code's LSTM, without peepholes).
Time-distributed layers: conv → BN → ReLU (encoder) / LeakyReLU 0.2 (decoder); recurrent
layers: cell → BN (the cells have their own tanh / σ). The last layer has a sigmoid.

Variants:
  plain          reconstructs the clip (B, T, H, W, C).
  bidirectional  every recurrent layer is a forward and a time-reversed cell, averaged.
  seq2seq        the encoder reads the first `seed_frames` frames; the decoder predicts the
                 remaining T − seed_frames (4 → 4 at T = 8, as the thesis' figures). As the
                 code: the decoder starts from a zero state and reads the encoder's last
                 output at every step, through a 4×4 'bridge' conv 96 → 96 (our choice: the
                 seed does not describe the layer; a 4×4 96 → 96 conv is the constant
                 +0.15 M that Tab. 4.12 adds to every Seq2Seq row). Outputs `recon` = the
                 predicted frames and `target` = the true ones (the loss compares those).
                 With DUT = Y nothing recurrent follows the bridge, so every predicted
                 frame is the same: why Tab. 4.13 has Seq2Seq rows only for DUT = N.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vadjax.models import MODELS
from vadjax.nn import Conv, ConvTranspose, batch_norm
from vadjax.nn.convrnn import CELLS, Bidirectional, ConvRecurrent
from vadjax.registry import UserError

VARIANTS = ('plain', 'bidirectional', 'seq2seq')


def check_clip(x, channels: int, model: str, min_frames: int = 1) -> None:
  if x.ndim != 5 or x.shape[-1] != channels or x.shape[1] < min_frames or (
      x.shape[2] % 16 or x.shape[3] % 16):
    raise UserError(
        f'{model} expects clips (batch, T ≥ {min_frames}, H, W, {channels}) with H and W '
        f'multiples of 16, got {tuple(x.shape)}; set data.video.clip_length, image_size and the '
        f'model channels to match the dataset')


def _frames(fn, x):
  """Applies a per-frame function to clips (B, T, ...)."""
  b, t = x.shape[:2]
  y = fn(x.reshape(b * t, *x.shape[2:]))
  return y.reshape(b, t, *y.shape[1:])


@MODELS.register('conv_rnn_ae')
class ConvRecurrentAE(nn.Module):
  """See the module docstring. `cell` 'rnn' | 'lstm' | 'gru'; `variant` 'plain' |
  'bidirectional' | 'seq2seq'; `recurrent_layers` L_R in 1..4; `recurrent_decoder` DUT = N."""
  channels: int = 1
  cell: str = 'gru'
  variant: str = 'plain'
  recurrent_layers: int = 2
  recurrent_decoder: bool = True
  filters: Sequence[int] = (64, 64, 64, 96, 96)
  seed_frames: int = 4
  peepholes: bool = True        # ConvLSTM only (eq. 3.16 has them; the seed's code not)
  leaky_slope: float = 0.2
  scan_impl: str = 'auto'       # 'auto' | 'custom' | 'autodiff' (vadjax.nn.convrnn)
  unroll: int = 1
  remat: bool = False
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  def _recurrent(self, h, features, stride, transposed, name):
    layer = dict(cell=self.cell, features=features, kernel=3, stride=stride, padding=1,
                 output_padding=stride - 1 if transposed else 0, transposed=transposed,
                 peepholes=self.peepholes, scan_impl=self.scan_impl, unroll=self.unroll,
                 remat=self.remat, conv_impl=self.conv_impl, dtype=self.dtype)
    if self.variant == 'bidirectional':
      return Bidirectional(layer, name=name)(h)
    return ConvRecurrent(**layer, name=name)(h)

  def _bn(self, h, train, name):
    return _frames(batch_norm(train, self.dtype, name), h)

  def _encode(self, x, train):
    h, first_rnn = x, 5 - self.recurrent_layers
    for i, f in enumerate(self.filters):
      stride = 2 if i < 4 else 1
      if i >= first_rnn:
        h = self._bn(self._recurrent(h, f, stride, False, f'enc{i}'), train, f'enc{i}_bn')
      else:
        h = _frames(Conv(f, 3, stride, 1, impl=self.conv_impl, dtype=self.dtype,
                         name=f'enc{i}'), h)
        h = nn.relu(self._bn(h, train, f'enc{i}_bn'))
    return h

  def _decode(self, h, train):
    outs = list(self.filters[3::-1]) + [self.channels]      # 96, 64, 64, 64, C
    for i, f in enumerate(outs):
      stride = 1 if i == 0 else 2
      if self.recurrent_decoder and i < self.recurrent_layers:
        h = self._recurrent(h, f, stride, True, f'dec{i}')
        if i < 4:
          h = self._bn(h, train, f'dec{i}_bn')
        continue
      h = _frames(ConvTranspose(f, 3, stride, 1, stride - 1, impl=self.conv_impl,
                                dtype=self.dtype, name=f'dec{i}'), h)
      if i < 4:
        h = nn.leaky_relu(self._bn(h, train, f'dec{i}_bn'), negative_slope=self.leaky_slope)
    return nn.sigmoid(h.astype(jnp.float32))

  @nn.compact
  def __call__(self, x, train: bool = False):
    name = f'{self.variant} conv_rnn_ae ({self.cell})'
    if self.cell not in CELLS:
      raise UserError(f'{name}: cell must be one of {CELLS}, got {self.cell!r}')
    if self.variant not in VARIANTS:
      raise UserError(f'conv_rnn_ae: variant must be one of {VARIANTS}, got {self.variant!r}')
    if not 1 <= self.recurrent_layers <= 4 or len(self.filters) != 5:
      raise UserError(f'{name}: needs 5 filters and 1 ≤ recurrent_layers ≤ 4, got '
                      f'{tuple(self.filters)} and {self.recurrent_layers}')
    seq2seq = self.variant == 'seq2seq'
    check_clip(x, self.channels, name, self.seed_frames + 1 if seq2seq else 1)
    x = x.astype(self.dtype)
    if not seq2seq:
      latent = self._encode(x, train)
      recon = self._decode(latent, train)
      return {'recon': recon, 'latent': latent.reshape(x.shape[0], -1).astype(jnp.float32)}
    seeds, future = x[:, :self.seed_frames], x[:, self.seed_frames:]
    last = self._encode(seeds, train)[:, -1]
    last = jnp.pad(last, ((0, 0), (1, 2), (1, 2), (0, 0)))      # torch padding='same', k4
    bridge = Conv(self.filters[4], 4, 1, 0, impl=self.conv_impl, dtype=self.dtype,
                  name='bridge')(last)
    steps = jnp.broadcast_to(bridge[:, None], (x.shape[0], future.shape[1], *bridge.shape[1:]))
    recon = self._decode(steps, train)
    return {'recon': recon, 'target': future.astype(jnp.float32),
            'latent': last.reshape(x.shape[0], -1).astype(jnp.float32)}


NAMES = {  # the nine architectures of seed 001 §4.9 (Tab. 4.13's row names)
    'crnn_ae': ('rnn', 'plain'), 'clstm_ae': ('lstm', 'plain'), 'cgru_ae': ('gru', 'plain'),
    'bicrnn_ae': ('rnn', 'bidirectional'), 'biclstm_ae': ('lstm', 'bidirectional'),
    'bicgru_ae': ('gru', 'bidirectional'), 'seq2seq_crnn': ('rnn', 'seq2seq'),
    'seq2seq_clstm': ('lstm', 'seq2seq'), 'seq2seq_cgru': ('gru', 'seq2seq')}

for _name, (_cell, _variant) in NAMES.items():
  MODELS.register(_name)(type(_name, (ConvRecurrentAE,), {
      '__annotations__': {'cell': str, 'variant': str}, 'cell': _cell, 'variant': _variant,
      '__doc__': f'{_variant} conv recurrent AE with {_cell} cells (see ConvRecurrentAE).',
      '__module__': __name__}))


@MODELS.register('per_frame')
class PerFrame(nn.Module):
  """A 2D model (`image_model`, any registered image model at its defaults) applied to
  every frame of clips (B, T, H, W, C): the per-frame baseline of seed 001 §4.9.2."""
  channels: int = 1
  image_model: str = 'bcae1'
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim != 5:
      raise UserError(f'per_frame expects clips (batch, T, H, W, C), got {tuple(x.shape)}')
    b, t = x.shape[:2]
    net = MODELS.get(self.image_model)(channels=self.channels, conv_impl=self.conv_impl,
                                       dtype=self.dtype, name='frames')
    out = net(x.reshape(b * t, *x.shape[2:]), train)
    return {'recon': out['recon'].reshape(x.shape), 'latent': out['latent'].reshape(b, -1)}
