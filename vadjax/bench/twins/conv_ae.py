"""Twins of the convolutional AEs of vadjax.models.conv_ae: BCAE1 with seed 001's attention
variants (SE, AA, SA, SSA) and seed 000's deep AE with CBAM / LTPA. The shapes come from
the Flax model's own geometry (`bcae1_geometry`)."""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vadjax.bench.twins.attention import (CBAM, AugmentedConv, InputAttention, PayAttention,
                                          SqueezeExcite)
from vadjax.bench.twins.registry import add, bn, mse_loss
from vadjax.models.conv_ae import bcae1_geometry


class BCAE1(nn.Module):
  """Twin of BCAE1 and its attention variants (`attention` 'none' | 'se' | 'aa',
  `input_attention` 'none' | 'sa' | 'ssa')."""

  def __init__(self, channels=1, input_size=(128, 128), filters=(64, 64, 64, 96, 96),
               leaky_slope=0.2, attention='none', input_attention='none', se_reduction=16,
               aa_key_ratio=0.125, aa_value_depth=1, aa_heads=1, sa_hidden=64,
               sa_penalty=1e-6, sa_form='paper', embedding_activation='relu'):
    super().__init__()
    self.slope, self.tanh = leaky_slope, embedding_activation == 'tanh'
    _, last_k, decoder = bcae1_geometry(input_size)
    if input_attention != 'none':
      self.input_attention = InputAttention(channels, input_attention, sa_hidden,
                                            penalty=sa_penalty, sa_form=sa_form)
    cin = channels
    for i, f in enumerate(filters):
      k, s = (3, 2) if i < 4 else (last_k, 1)
      if attention == 'aa':
        self.add_module(f'enc{i}', AugmentedConv(cin, f, k, s, max(int(f * aa_key_ratio), 1),
                                                 aa_value_depth, aa_heads))
      else:
        self.add_module(f'enc{i}', nn.Conv2d(cin, f, k, s))
      if i < 4 or not self.tanh:
        self.add_module(f'enc{i}_bn', bn(f))
      if attention == 'se' and i < 4:
        self.add_module(f'enc{i}_se', SqueezeExcite(f, se_reduction))
      cin = f
    for i, (f, (k, s)) in enumerate(zip(list(filters[3::-1]) + [channels], decoder)):
      self.add_module(f'dec{i}', nn.ConvTranspose2d(cin, f, k, s))
      if i < 4:
        self.add_module(f'dec{i}_bn', bn(f))
        if attention == 'se':
          self.add_module(f'dec{i}_se', SqueezeExcite(f, se_reduction))
      cin = f

  def _extra(self, name, h):
    return getattr(self, name)(h) if hasattr(self, name) else h

  def forward(self, x):
    out, maps = {}, {}
    if hasattr(self, 'input_attention'):
      x, maps['input'], out['regularizer'] = self.input_attention(x)
    h = x
    for i in range(5):
      h = getattr(self, f'enc{i}')(h)
      if isinstance(h, tuple):
        h, maps[f'enc{i}'] = h
      h = torch.tanh(h) if i == 4 and self.tanh else torch.relu(
          getattr(self, f'enc{i}_bn')(h))
      h = self._extra(f'enc{i}_se', h)
    out['latent'] = h.permute(0, 2, 3, 1).flatten(1)     # NHWC order, as in Flax
    for i in range(5):
      h = getattr(self, f'dec{i}')(h)
      if i < 4:
        h = self._extra(f'dec{i}_se', F.leaky_relu(getattr(self, f'dec{i}_bn')(h), self.slope))
    out['recon'] = torch.sigmoid(h)
    if maps:
      out['attention'] = maps
    return out

  def loss(self, out, x, target=None):
    """MSE, plus SA-CAE's λ‖x_AM‖ where the model has it (vadjax.methods.reconstruction)."""
    return mse_loss(out, x) + (out['regularizer'].float().mean() if 'regularizer' in out
                               else 0.0)


class DeepAE(nn.Module):
  """Twin of seed 000's deep AE, plain or with `attention` 'cbam' | 'ltpa'."""

  def __init__(self, channels=1, input_size=(32, 32), filters=(8, 16, 32, 64, 128),
               strides=(1, 2, 2, 2, 1), fc_features=(512, 128, 512), attention='none',
               compatibility='pc', attention_blocks=(2, 4)):
    super().__init__()
    blocks = tuple(attention_blocks) if attention != 'none' else ()
    down = int(np.prod(strides))
    self.shape = (filters[-1], input_size[0] // down, input_size[1] // down)
    cin = channels
    for i, (f, s) in enumerate(zip(filters, strides)):
      self.add_module(f'enc{i}', nn.Conv2d(cin, f, 3, s, 1))
      self.add_module(f'enc{i}_bn', bn(f))
      if i + 1 in blocks and attention == 'cbam':
        self.add_module(f'cbam{i + 1}', CBAM(f))
      elif i + 1 in blocks:
        self.add_module(f'ltpa{i + 1}', PayAttention(f, filters[-1], compatibility))
      cin = f
    flat = int(np.prod(self.shape))
    extra = sum(filters[b - 1] for b in blocks) if attention == 'ltpa' else 0
    widths = [flat + extra] + list(fc_features) + [flat]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
      self.add_module(f'fc{i}', nn.Linear(a, b))
    self.n_fc, self.latent_index = len(widths) - 1, len(fc_features) // 2
    self.n_enc = len(strides)
    outs = list(filters[-2::-1]) + [channels]
    for i, (f, s) in enumerate(zip(outs, strides[::-1])):
      self.add_module(f'dec{i}', nn.ConvTranspose2d(cin, f, 3, s, 1, s - 1))
      if i < len(outs) - 1:
        self.add_module(f'dec{i}_bn', bn(f))
      cin = f
    self.n_dec = len(outs)

  def forward(self, x):
    h, maps, locals_ = x, {}, []
    for i in range(self.n_enc):
      h = F.leaky_relu(getattr(self, f'enc{i}_bn')(getattr(self, f'enc{i}')(h)), 0.2)
      if hasattr(self, f'cbam{i + 1}'):
        h, maps[f'cbam{i + 1}'] = getattr(self, f'cbam{i + 1}')(h)
      elif hasattr(self, f'ltpa{i + 1}'):
        locals_.append((i + 1, h))
    z = h.permute(0, 2, 3, 1).flatten(1)      # NHWC order, so Flax's Dense kernels port as is
    if locals_:
      g = h.mean((2, 3))
      attended = []
      for block, local in locals_:
        a, maps[f'ltpa{block}'] = getattr(self, f'ltpa{block}')(local, g)
        attended.append(a)
      z = torch.cat([z, *attended], 1)
    for i in range(self.n_fc):
      z = getattr(self, f'fc{i}')(z)
      if i < self.n_fc - 1:
        z = torch.relu(z)
      if i == self.latent_index:
        latent = z
    c, hh, ww = self.shape
    h = z.view(-1, hh, ww, c).permute(0, 3, 1, 2)
    for i in range(self.n_dec):
      h = getattr(self, f'dec{i}')(h)
      if i < self.n_dec - 1:
        h = F.leaky_relu(getattr(self, f'dec{i}_bn')(h), 0.2)
    out = {'recon': h, 'latent': latent}
    if maps:
      out['attention'] = maps
    return out

  loss = staticmethod(mse_loss)


add('bcae1', BCAE1)
add('se_cae', BCAE1, attention='se')
add('aa_cae', BCAE1, attention='aa')
add('sa_cae', BCAE1, input_attention='sa')
add('ssa_cae', BCAE1, input_attention='ssa')
add('deep_ae', DeepAE)
add('cbam_ae', DeepAE, attention='cbam')
add('ltpa_ae', DeepAE, attention='ltpa')
