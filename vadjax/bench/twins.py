"""PyTorch twins of the vadjax models, and functions that port Flax variables into them.

A twin has the same layers in the same order; `port(twin, variables)` copies params and
batch statistics (layouts: vadjax.nn.layers docstrings). Used for parity tests (same weights,
same input → same outputs) and for the speed comparison in `experiments/bench.py`.
"""

import numpy as np
import torch
from torch import nn

from vadjax.models.conv_ae import _valid_out

TWINS = {}


def register(name):
  def add(cls):
    TWINS[name] = cls
    return cls
  return add


def _bn(c, dims=2):
  return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(c, eps=1e-5, momentum=0.1)


@register('bcae1')
class BCAE1(nn.Module):
  """Twin of `vadjax.models.conv_ae.BCAE1` for a given input size (NCHW)."""

  def __init__(self, channels=1, input_size=(128, 128), filters=(64, 64, 64, 96, 96),
               leaky_slope=0.2, embedding_activation='relu'):
    super().__init__()
    sizes = [tuple(input_size)]
    for _ in range(4):
      sizes.append(tuple(_valid_out(s, 3, 2) for s in sizes[-1]))
    last_k = tuple(min(4, s) for s in sizes[-1])
    sizes.append(tuple(_valid_out(s, k, 1) for s, k in zip(sizes[-1], last_k)))
    self.tanh = embedding_activation == 'tanh'
    self.slope = leaky_slope
    cin, enc = channels, []
    for f in filters[:4]:
      enc += [nn.Conv2d(cin, f, 3, 2), _bn(f)]
      cin = f
    enc.append(nn.Conv2d(cin, filters[4], last_k, 1))
    if not self.tanh:
      enc.append(_bn(filters[4]))
    self.enc = nn.ModuleList(enc)
    dec, cin, size = [], filters[4], sizes[-1]
    for i, f in enumerate(list(filters[3::-1]) + [channels]):
      level = 4 - i
      if level == 4:
        k, s = last_k, 1
      else:
        k, s = tuple(t - 2 * (c - 1) for t, c in zip(sizes[level], size)), 2
      dec.append(nn.ConvTranspose2d(cin, f, k, s))
      if i < 4:
        dec.append(_bn(f))
      cin, size = f, sizes[level]
    self.dec = nn.ModuleList(dec)

  def forward(self, x):
    h = x
    for i in range(4):
      h = torch.relu(self.enc[2 * i + 1](self.enc[2 * i](h)))
    h = self.enc[8](h)
    h = torch.tanh(h) if self.tanh else torch.relu(self.enc[9](h))
    latent = h.permute(0, 2, 3, 1).flatten(1)      # NHWC order, as in Flax
    for i in range(4):
      h = nn.functional.leaky_relu(self.dec[2 * i + 1](self.dec[2 * i](h)), self.slope)
    return {'recon': torch.sigmoid(self.dec[8](h)), 'latent': latent}


@register('deep_ae')
class DeepAE(nn.Module):
  """Twin of `vadjax.models.conv_ae.DeepAE` (seed 000)."""

  def __init__(self, channels=1, input_size=(32, 32), filters=(8, 16, 32, 64, 128),
               strides=(1, 2, 2, 2, 1), fc_features=(512, 128, 512)):
    super().__init__()
    down = int(np.prod(strides))
    self.shape = (filters[-1], input_size[0] // down, input_size[1] // down)
    cin, enc = channels, []
    for f, s in zip(filters, strides):
      enc += [nn.Conv2d(cin, f, 3, s, 1), _bn(f)]
      cin = f
    self.enc = nn.ModuleList(enc)
    widths = [int(np.prod(self.shape))] + list(fc_features) + [int(np.prod(self.shape))]
    self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
    self.latent_index = len(fc_features) // 2
    dec, outs = [], list(filters[-2::-1]) + [channels]
    for i, (f, s) in enumerate(zip(outs, strides[::-1])):
      dec.append(nn.ConvTranspose2d(cin, f, 3, s, 1, s - 1))
      if i < len(outs) - 1:
        dec.append(_bn(f))
      cin = f
    self.dec = nn.ModuleList(dec)

  def forward(self, x):
    h = x
    for i in range(0, len(self.enc), 2):
      h = nn.functional.leaky_relu(self.enc[i + 1](self.enc[i](h)), 0.2)
    z = h.permute(0, 2, 3, 1).flatten(1)      # NHWC order, so Flax's Dense kernels port as is
    for i, fc in enumerate(self.fc):
      z = fc(z)
      if i < len(self.fc) - 1:
        z = torch.relu(z)
      if i == self.latent_index:
        latent = z
    c, hh, ww = self.shape
    h = z.view(-1, hh, ww, c).permute(0, 3, 1, 2)
    n = len(self.dec)
    for i in range(0, n - 1, 2):
      h = nn.functional.leaky_relu(self.dec[i + 1](self.dec[i](h)), 0.2)
    return {'recon': self.dec[n - 1](h), 'latent': latent}


class Memory(nn.Module):
  """Twin of `vadjax.nn.memory.Memory`: addressing of all queries in one matmul."""

  def __init__(self, num_items, features, similarity='cosine', normalize='softmax',
               shrink_threshold=0.0005):
    super().__init__()
    self.memory = nn.Parameter(torch.empty(num_items, features).uniform_(
        -features ** -0.5, features ** -0.5))
    self.similarity, self.normalize, self.lam = similarity, normalize, shrink_threshold

  def forward(self, z):                         # z (..., C) channels-last
    q, m = z.reshape(-1, z.shape[-1]), self.memory
    if self.similarity == 'cosine':
      q, m = nn.functional.normalize(q, dim=1), nn.functional.normalize(m, dim=1)
    logits = q @ m.t()
    if self.normalize == 'softmax':
      w = torch.softmax(logits, dim=1)
    else:
      zs, _ = torch.sort(logits, dim=1, descending=True)
      k = torch.arange(1, zs.shape[1] + 1, dtype=zs.dtype, device=zs.device)
      cs = zs.cumsum(1)
      kz = (1 + k * zs > cs).sum(1, keepdim=True)
      tau = (cs.gather(1, kz - 1) - 1) / kz.to(zs.dtype)
      w = torch.clamp(logits - tau, min=0)
    if self.lam > 0:
      w = torch.relu(w - self.lam) * w / (torch.abs(w - self.lam) + 1e-12)
      w = nn.functional.normalize(w, p=1, dim=1)
    z_hat = w @ self.memory
    return z_hat.reshape(z.shape), w.reshape(*z.shape[:-1], -1)


class _MemAE(nn.Module):
  """Shared twin body of MemAE-2D/3D: channels-first convs, channels-last memory."""

  def __init__(self, enc, dec, memory, output_activation, dims):
    super().__init__()
    self.enc, self.dec, self.mem = nn.ModuleList(enc), nn.ModuleList(dec), memory
    self.sigmoid, self.dims = output_activation == 'sigmoid', dims

  def forward(self, x):
    h = x
    for i in range(0, len(self.enc), 2):
      h = nn.functional.leaky_relu(self.enc[i + 1](self.enc[i](h)), 0.2)
    last = h.movedim(1, -1)
    out = {'latent': last.flatten(1)}
    if self.mem is not None:
      z, w = self.mem(last)
      out['memory_weights'] = w
      h = z.movedim(-1, 1)
    n = len(self.dec)
    for i in range(0, n - 1, 2):
      h = nn.functional.leaky_relu(self.dec[i + 1](self.dec[i](h)), 0.2)
    h = self.dec[n - 1](h)
    out['recon'] = torch.sigmoid(h) if self.sigmoid else h
    return out


def _memory(use_memory, features, memory_items, similarity, normalize, shrink_ratio):
  if not use_memory:
    return None
  return Memory(memory_items, features, similarity, normalize, shrink_ratio / memory_items)


@register('memae_2d')
class MemAE2D(_MemAE):
  """Twin of `vadjax.models.memae.MemAE2D`."""

  def __init__(self, channels=1, input_size=None, filters=(16, 32, 64), kernels=(1, 3, 3),
               use_memory=True, memory_items=100, similarity='cosine', normalize='softmax',
               shrink_ratio=1.0, output_activation='sigmoid'):
    del input_size
    enc, cin = [], channels
    for f, k in zip(filters, kernels):
      enc += [nn.Conv2d(cin, f, k, 2, k // 2), _bn(f)]
      cin = f
    dec, outs = [], list(filters[-2::-1]) + [channels]
    for i, f in enumerate(outs):
      dec.append(nn.ConvTranspose2d(cin, f, 3, 2, 1, 1))
      if i < len(outs) - 1:
        dec.append(_bn(f))
      cin = f
    super().__init__(enc, dec, _memory(use_memory, filters[-1], memory_items, similarity,
                                       normalize, shrink_ratio), output_activation, 2)


@register('memae_3d')
class MemAE3D(_MemAE):
  """Twin of `vadjax.models.memae.MemAE3D` (the official code's AutoEncoderCov3DMem)."""

  def __init__(self, channels=1, input_size=None, filters=(96, 128, 256, 256),
               strides=((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)), use_memory=True,
               memory_items=2000, similarity='cosine', normalize='softmax',
               shrink_ratio=1.0, output_activation='sigmoid'):
    del input_size
    enc, cin = [], channels
    for f, s in zip(filters, strides):
      enc += [nn.Conv3d(cin, f, 3, tuple(s), 1), _bn(f, 3)]
      cin = f
    dec, outs = [], list(filters[-2::-1]) + [channels]
    for i, (f, s) in enumerate(zip(outs, strides[::-1])):
      dec.append(nn.ConvTranspose3d(cin, f, 3, tuple(s), 1, tuple(int(v > 1) for v in s)))
      if i < len(outs) - 1:
        dec.append(_bn(f, 3))
      cin = f
    super().__init__(enc, dec, _memory(use_memory, filters[-1], memory_items, similarity,
                                       normalize, shrink_ratio), output_activation, 3)


# ------------------------------------------------------------------------------ porting

def _t(a):
  return torch.from_numpy(np.array(a, dtype=np.float32))


def _copy_conv(m, p):
  k = np.asarray(p['kernel'])
  sp = tuple(range(k.ndim - 2))                     # spatial axes of the Flax kernel
  if isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
    m.weight.data = _t(k.transpose(k.ndim - 2, k.ndim - 1, *sp))   # (..,ci,co) → (ci,co,..)
  elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
    m.weight.data = _t(k.transpose(k.ndim - 1, k.ndim - 2, *sp))   # (..,ci,co) → (co,ci,..)
  else:                                             # Linear: (in,out) → (out,in)
    m.weight.data = _t(k.T)
  m.bias.data = _t(p['bias'])


def _copy_bn(m, p, s):
  m.weight.data, m.bias.data = _t(p['scale']), _t(p['bias'])
  m.running_mean.data, m.running_var.data = _t(s['mean']), _t(s['var'])


def port(twin: nn.Module, variables) -> nn.Module:
  """Copies Flax `variables` ({'params', 'batch_stats'}) of the same model into `twin`.

  Layers are matched by order: Flax names conv/dense layers `enc<i>`, `fc<i>`, `dec<i>`
  and their BatchNorms `<name>_bn`, in the same order as the twin's module lists.
  """
  if getattr(twin, 'flax_names', False):
    return zoo_twins.port_by_name(twin, variables)
  params, stats = variables['params'], variables.get('batch_stats', {})
  if 'encoder' in params:            # MemAE: encoder / decoder submodules, and the memory
    params = {**params['encoder'], **params['decoder']}
    stats = {**stats.get('encoder', {}), **stats.get('decoder', {})}
    if getattr(twin, 'mem', None) is not None:
      twin.mem.memory.data = _t(variables['params']['memory']['memory'])
  for prefix in ('enc', 'fc', 'dec'):
    modules = list(getattr(twin, prefix, []))
    names = sorted((k for k in params if k.startswith(prefix) and not k.endswith('_bn')),
                   key=lambda k: int(k[len(prefix):]))
    layers = [m for m in modules if not isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]
    bns = [m for m in modules if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]
    if len(names) != len(layers):
      raise ValueError(f'{prefix}: {len(names)} Flax layers vs {len(layers)} twin layers')
    bn_names = [n + '_bn' for n in names if n + '_bn' in params]
    if len(bn_names) != len(bns):
      raise ValueError(f'{prefix}: {len(bn_names)} Flax BatchNorms vs {len(bns)} in the twin')
    for n, m in zip(names, layers):
      _copy_conv(m, params[n])
    for n, m in zip(bn_names, bns):
      _copy_bn(m, params[n], stats[n])
  return twin


from vadjax.bench import seed002_twins, video_twins, zoo_twins  # noqa: E402,F401  (register their twins)
