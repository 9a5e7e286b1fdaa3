"""Twins of BCAE2 and KS-CAE (vadjax.models.ks_cae): plain, ACB/ADB or fused blocks."""

import torch
from torch import nn
from torch.nn import functional as F

from vadjax.bench.twins.registry import add, bn, mse_loss
from vadjax.models.ks_cae import DECODER, ENCODER, last_kernel
from vadjax.nn.acb import branch_geometry


class AsymmetricBlock(nn.Module):
  """ACB / ADB (vadjax.nn.acb): three bias-free branches, each with BN or a bias; negative
  paddings crop (conv) or pad the output (transposed conv)."""

  def __init__(self, cin, features, k, stride, padding=0, transposed=False, norm=True):
    super().__init__()
    self.geometry, self.transposed, self.norm = branch_geometry(k, padding), transposed, norm
    layer = nn.ConvTranspose2d if transposed else nn.Conv2d
    for name, (shape, _) in self.geometry.items():
      self.add_module(name, layer(cin, features, shape, stride, bias=False))
      if norm:
        self.add_module(f'{name}_bn', bn(features))
      else:
        self.register_parameter(f'{name}_bias', nn.Parameter(torch.zeros(features)))

  def forward(self, x):
    total = 0
    for name, (_, (ph, pw)) in self.geometry.items():
      if self.transposed:       # padding p crops p rows of the full output: pad by −p
        y = F.pad(getattr(self, name)(x), (-pw[0], -pw[1], -ph[0], -ph[1]))
      else:
        y = getattr(self, name)(F.pad(x, (pw[0], pw[1], ph[0], ph[1])))
      if self.norm:
        y = getattr(self, f'{name}_bn')(y)
      else:
        y = y + getattr(self, f'{name}_bias')[:, None, None]
      total = total + y
    return total


class BCAE2(nn.Module):
  """Twin of `vadjax.models.ks_cae.BCAE2` (block 'plain' | 'acb' | 'fused')."""

  def __init__(self, channels=1, input_size=(128, 128), filters=(64, 128, 256, 512, 300),
               decoder_filters=(512, 256, 128, 64, 16), width=1.0, block='plain',
               strengthened=4, leaky_slope=0.2):
    super().__init__()
    self.block = block
    self.slope = leaky_slope
    scale = lambda f: max(int(round(f * width)), 1)   # noqa: E731
    enc = [scale(f) for f in filters[:-1]] + [filters[-1]]
    dec = [scale(f) for f in decoder_filters] + [channels]
    last = last_kernel(input_size)[0]
    layers = [(f'enc{i}', k, s, f, False, True, i < strengthened)
              for i, ((k, s), f) in enumerate(zip(ENCODER, enc))]
    n = len(DECODER) + 1
    layers += [(f'dec{i}', k, s, f, True, i < n - 1, i >= n - strengthened)
               for i, ((k, s), f) in enumerate(zip(list(DECODER) + [(last, 1)], dec))]
    cin = channels
    for name_, k, s, f, transposed, norm, acb in layers:
      if acb and self.block == 'acb':
        self.add_module(name_, AsymmetricBlock(cin, f, k, s, transposed=transposed, norm=norm))
      else:
        self.add_module(name_, (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, f, k, s))
        if norm and not (acb and self.block == 'fused'):
          self.add_module(f'{name_}_bn', bn(f))
      cin = f
    self.n_enc, self.n_dec = len(ENCODER), n

  def _layer(self, name, h):
    h = getattr(self, name)(h)
    return getattr(self, f'{name}_bn')(h) if hasattr(self, f'{name}_bn') else h

  def forward(self, x):
    h = x
    for i in range(self.n_enc):
      h = torch.relu(self._layer(f'enc{i}', h))
    latent = h.permute(0, 2, 3, 1).flatten(1)
    for i in range(self.n_dec - 1):
      h = F.leaky_relu(self._layer(f'dec{i}', h), self.slope)
    return {'recon': torch.sigmoid(self._layer(f'dec{self.n_dec - 1}', h)), 'latent': latent}

  loss = staticmethod(mse_loss)


add('bcae2', BCAE2)
add('ks_cae', BCAE2, width=0.5, block='acb')
add('ks_cae_fused', BCAE2, width=0.5, block='fused')
