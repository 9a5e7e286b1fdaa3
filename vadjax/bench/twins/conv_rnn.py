"""PyTorch twins of the convolutional recurrent AEs (`vadjax.models.conv_rnn_ae`).

The cells are written out here from seed 001's eqs. 3.15–3.17, stepping through time in a
Python loop (the usual PyTorch form), so they are an independent reference for the scanned
Flax cells. Clips are channels-first (B, C, T, H, W), as `torch.nn.Conv3d`. Submodules carry
the Flax names, so `vadjax.bench.twins.port` copies variables by path.
"""

import torch
from torch import nn

from vadjax.bench.twins.registry import TWINS, add, bn, mse_loss
from vadjax.models.conv_rnn_ae import NAMES

GATES = {'rnn': 1, 'lstm': 4, 'gru': 3}


class Recurrent(nn.Module):
  """One ConvRNN / ConvLSTM / ConvGRU layer over (B, T, C, H, W) → (B, T, F, h, w)."""

  def __init__(self, cell, cin, features, stride, transposed, peepholes, out_size):
    super().__init__()
    g = GATES[cell]
    self.cell, self.f = cell, features
    if transposed:
      self.input = nn.ConvTranspose2d(cin, g * features, 3, stride, 1, stride - 1, bias=False)
    else:
      self.input = nn.Conv2d(cin, g * features, 3, stride, 1, bias=False)
    self.hidden = nn.Conv2d(features, g * features, 3, 1, 1, bias=False)
    biased = {'rnn': 1, 'lstm': 4, 'gru': 2}[cell] * features
    self.bias = nn.Parameter(torch.zeros(biased))
    self.peepholes = None
    if cell == 'lstm' and peepholes:     # stored as Flax's (3, h, w, F)
      self.peepholes = nn.Parameter(torch.zeros(3, out_size, out_size, features))
    if cell == 'rnn':
      self.output = nn.Conv2d(features, features, 3, 1, 1)

  def step(self, xp, h, c):
    z = self.hidden(h)
    if self.cell == 'rnn':
      return torch.tanh(xp + z), None
    if self.cell == 'gru':
      xu, xr, xa = xp.chunk(3, 1)
      hu, hr, ha = z.chunk(3, 1)
      u, r = torch.sigmoid(xu + hu), torch.sigmoid(xr + hr)
      a = torch.tanh(r * ha + xa)
      return a * (1 - u) + u * h, None
    zi, zf, zc, zo = (xp + z).chunk(4, 1)
    if self.peepholes is not None:
      p = self.peepholes.permute(0, 3, 1, 2)
      zi, zf = zi + p[0] * c, zf + p[1] * c
    c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zc)
    if self.peepholes is not None:
      zo = zo + p[2] * c
    return torch.sigmoid(zo) * torch.tanh(c), c

  def forward(self, x, reverse=False):
    b, t = x.shape[:2]
    xp = self.input(x.flatten(0, 1))
    bias = torch.cat([self.bias, self.bias.new_zeros(xp.shape[1] - len(self.bias))])
    xp = (xp + bias[:, None, None]).unflatten(0, (b, t))
    h = xp.new_zeros(b, self.f, *xp.shape[-2:])
    c = torch.zeros_like(h)
    outs = [None] * t
    for i in (reversed(range(t)) if reverse else range(t)):
      h, c = self.step(xp[:, i], h, c)
      outs[i] = h
    hs = torch.stack(outs, 1)
    if self.cell == 'rnn':
      hs = torch.sigmoid(self.output(hs.flatten(0, 1))).unflatten(0, (b, t))
    return hs


class Bidirectional(nn.Module):
  def __init__(self, *args):
    super().__init__()
    self.fwd, self.bwd = Recurrent(*args), Recurrent(*args)

  def forward(self, x):
    return (self.fwd(x) + self.bwd(x, reverse=True)) / 2


class ConvRecurrentAE(nn.Module):
  """Twin of `vadjax.models.conv_rnn_ae.ConvRecurrentAE` (same fields)."""

  def __init__(self, channels=1, input_size=(128, 128), cell='gru', variant='plain',
               recurrent_layers=2, recurrent_decoder=True, filters=(64, 64, 64, 96, 96),
               seed_frames=4, peepholes=True, leaky_slope=0.2, **flax_only):
    del flax_only     # scan_impl, unroll, remat, conv_impl, dtype: speed settings of JAX
    super().__init__()
    self.variant, self.seed_frames, self.slope = variant, seed_frames, leaky_slope
    size, cin = input_size[0], channels
    layer = Bidirectional if variant == 'bidirectional' else Recurrent
    self.enc_recurrent = []
    for i, f in enumerate(filters):
      stride = 2 if i < 4 else 1
      size //= stride
      if i >= 5 - recurrent_layers:
        self.add_module(f'enc{i}', layer(cell, cin, f, stride, False, peepholes, size))
        self.enc_recurrent.append(i)
      else:
        self.add_module(f'enc{i}', nn.Conv2d(cin, f, 3, stride, 1))
      self.add_module(f'enc{i}_bn', bn(f))
      cin = f
    if variant == 'seq2seq':
      self.bridge = nn.Conv2d(cin, filters[4], 4, 1, 0)      # on the input padded (1, 2)
    self.dec_recurrent = []
    outs = list(filters[3::-1]) + [channels]
    for i, f in enumerate(outs):
      stride = 1 if i == 0 else 2
      size *= stride
      if recurrent_decoder and i < recurrent_layers:
        self.add_module(f'dec{i}', layer(cell, cin, f, stride, True, peepholes, size))
        self.dec_recurrent.append(i)
      else:
        self.add_module(f'dec{i}', nn.ConvTranspose2d(cin, f, 3, stride, 1, stride - 1))
      if i < 4:
        self.add_module(f'dec{i}_bn', bn(f))
      cin = f

  def _layer(self, name, h, recurrent):
    b, t = h.shape[:2]
    m = getattr(self, name)
    h = m(h) if recurrent else m(h.flatten(0, 1)).unflatten(0, (b, t))
    if hasattr(self, name + '_bn'):
      h = getattr(self, name + '_bn')(h.flatten(0, 1)).unflatten(0, (b, t))
    return h

  def encode(self, h):
    for i in range(5):
      h = self._layer(f'enc{i}', h, i in self.enc_recurrent)
      if i not in self.enc_recurrent:
        h = torch.relu(h)
    return h

  def decode(self, h):
    for i in range(5):
      h = self._layer(f'dec{i}', h, i in self.dec_recurrent)
      if i not in self.dec_recurrent and i < 4:
        h = nn.functional.leaky_relu(h, self.slope)
    return torch.sigmoid(h)

  def forward(self, x):                       # x (B, C, T, H, W)
    x = x.transpose(1, 2)
    if self.variant != 'seq2seq':
      latent = self.encode(x)
      return {'recon': self.decode(latent).transpose(1, 2), 'latent': latent.flatten(1)}
    s = self.seed_frames
    last = self.encode(x[:, :s])[:, -1]
    steps = self.bridge(nn.functional.pad(last, (1, 2, 1, 2)))[:, None].expand(-1, x.shape[1] - s, -1, -1, -1)
    return {'recon': self.decode(steps).transpose(1, 2), 'target': x[:, s:].transpose(1, 2),
            'latent': last.flatten(1)}


  loss = staticmethod(mse_loss)


add('conv_rnn_ae', ConvRecurrentAE)
for _name, (_cell, _variant) in NAMES.items():
  add(_name, ConvRecurrentAE, cell=_cell, variant=_variant)


class PerFrame(nn.Module):
  """Twin of `vadjax.models.conv_rnn_ae.PerFrame`: the image twin of `image_model` on every
  frame of clips (B, C, T, H, W)."""

  def __init__(self, channels=1, input_size=(128, 128), image_model='bcae1'):
    super().__init__()
    self.frames = TWINS[image_model](channels=channels, input_size=input_size)

  def forward(self, x):
    b, t = x.shape[0], x.shape[2]
    out = self.frames(x.transpose(1, 2).flatten(0, 1))
    return {'recon': out['recon'].unflatten(0, (b, t)).transpose(1, 2),
            'latent': out['latent'].reshape(b, -1)}

  loss = staticmethod(mse_loss)


add('per_frame', PerFrame)
