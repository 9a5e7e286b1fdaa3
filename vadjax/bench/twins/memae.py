"""Twins of MemAE (vadjax.models.memae, seed 003): the memory module, and MemAE-2D / 3D with
the Flax names (`encoder.enc0`, `decoder.dec0_bn`, `memory.memory`)."""

import torch
from torch import nn
from torch.nn import functional as F

from vadjax.bench.twins.registry import add, bn, mse_loss

ENTROPY_WEIGHT = 2e-4        # α of seed 003, as vadjax.methods.memae


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
      q, m = F.normalize(q, dim=1), F.normalize(m, dim=1)
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
      w = F.normalize(w, p=1, dim=1)
    z_hat = w @ self.memory
    return z_hat.reshape(z.shape), w.reshape(*z.shape[:-1], -1)

  @staticmethod
  def loss(out, x=None, target=None):
    """The memory kernel's benchmark objective: a read-out term plus MemAE's entropy."""
    z_hat, w = out[0].float(), out[1].float()
    return (z_hat ** 2).mean() - ENTROPY_WEIGHT * (w * torch.log(w + 1e-12)).sum(-1).mean()


class _Stack(nn.Module):
  """Layers `<prefix><i>` with BatchNorms `<prefix><i>_bn` (all but the decoder's last)."""

  def __init__(self, prefix, layers, norms, dims):
    super().__init__()
    self.names = [f'{prefix}{i}' for i in range(len(layers))]
    for name, layer, c in zip(self.names, layers, norms):
      self.add_module(name, layer)
      if c:
        self.add_module(f'{name}_bn', bn(c, dims))

  def forward(self, h, last_plain=False):
    for i, name in enumerate(self.names):
      h = getattr(self, name)(h)
      if not (last_plain and i == len(self.names) - 1):
        h = F.leaky_relu(getattr(self, f'{name}_bn')(h), 0.2)
    return h


class _MemAE(nn.Module):
  """Shared twin body of MemAE-2D/3D: channels-first convs, channels-last memory."""

  def __init__(self, encoder, decoder, memory, output_activation):
    super().__init__()
    self.encoder, self.decoder = encoder, decoder
    if memory is not None:
      self.memory = memory
    self.sigmoid = output_activation == 'sigmoid'

  def forward(self, x):
    last = self.encoder(x).movedim(1, -1)
    out, h = {'latent': last.flatten(1)}, None
    if hasattr(self, 'memory'):
      z, out['memory_weights'] = self.memory(last)
      h = z.movedim(-1, 1)
    h = self.decoder(last.movedim(-1, 1) if h is None else h, last_plain=True)
    out['recon'] = torch.sigmoid(h) if self.sigmoid else h
    return out

  @staticmethod
  def loss(out, x, target=None):
    """MSE + α·entropy of the memory weights (vadjax.methods.memae)."""
    loss = mse_loss(out, x)
    if 'memory_weights' in out:
      w = out['memory_weights'].float()
      loss = loss - ENTROPY_WEIGHT * (w * torch.log(w + 1e-12)).sum(-1).mean()
    return loss


def _memory(use_memory, features, memory_items, similarity, normalize, shrink_ratio):
  if not use_memory:
    return None
  return Memory(memory_items, features, similarity, normalize, shrink_ratio / memory_items)


class MemAE2D(_MemAE):
  """Twin of `vadjax.models.memae.MemAE2D`."""

  def __init__(self, channels=1, input_size=None, filters=(16, 32, 64), kernels=(1, 3, 3),
               use_memory=True, memory_items=100, similarity='cosine', normalize='softmax',
               shrink_ratio=1.0, output_activation='sigmoid'):
    del input_size
    ins = [channels, *filters[:-1]]
    enc = [nn.Conv2d(c, f, k, 2, k // 2) for c, f, k in zip(ins, filters, kernels)]
    outs = list(filters[-2::-1]) + [channels]
    dec = [nn.ConvTranspose2d(c, f, 3, 2, 1, 1) for c, f in zip(filters[::-1], outs)]
    super().__init__(_Stack('enc', enc, filters, 2), _Stack('dec', dec, outs[:-1] + [0], 2),
                     _memory(use_memory, filters[-1], memory_items, similarity, normalize,
                             shrink_ratio), output_activation)


class MemAE3D(_MemAE):
  """Twin of `vadjax.models.memae.MemAE3D` (the official code's AutoEncoderCov3DMem)."""

  def __init__(self, channels=1, input_size=None, filters=(96, 128, 256, 256),
               strides=((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)), use_memory=True,
               memory_items=2000, similarity='cosine', normalize='softmax',
               shrink_ratio=1.0, output_activation='sigmoid'):
    del input_size
    ins = [channels, *filters[:-1]]
    enc = [nn.Conv3d(c, f, 3, tuple(s), 1) for c, f, s in zip(ins, filters, strides)]
    outs = list(filters[-2::-1]) + [channels]
    dec = [nn.ConvTranspose3d(c, f, 3, tuple(s), 1, tuple(int(v > 1) for v in s))
           for c, f, s in zip(filters[::-1], outs, strides[::-1])]
    super().__init__(_Stack('enc', enc, filters, 3), _Stack('dec', dec, outs[:-1] + [0], 3),
                     _memory(use_memory, filters[-1], memory_items, similarity, normalize,
                             shrink_ratio), output_activation)


add('memae_2d', MemAE2D)
add('memae_3d', MemAE3D)
