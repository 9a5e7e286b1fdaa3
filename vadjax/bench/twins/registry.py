"""The twin registry and the one porting scheme.

Every twin's submodules carry the Flax module names (`enc0`, `enc0_bn`, `encoder.enc0`,
`memory`, ...), so `port(twin, variables)` copies params and batch statistics by path,
whatever the architecture. Layouts (vadjax/nn/layers.py docstrings): conv kernels
(..., Cin, Cout) → (Cout, Cin, ...), transposed (..., Cin, Cout) → (Cin, Cout, ...), dense
(in, out) → (out, in).
"""

import functools

import numpy as np
import torch
from torch import nn

TWINS = {}


def add(name: str, cls, **fixed) -> None:
  """Registers twin `name`: `cls`, with `fixed` keyword arguments (a model's variant)."""
  if name in TWINS:
    raise ValueError(f'twin {name!r} is registered twice')
  TWINS[name] = functools.partial(cls, **fixed) if fixed else cls


def bn(c, dims=2):
  """PyTorch BatchNorm with the defaults the Flax models mirror (vadjax.nn.layers.batch_norm)."""
  return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(c, eps=1e-5, momentum=0.1)


def tensor(a):
  """float64 stays float64 (the reference lane's float64 runs); anything else float32."""
  a = np.asarray(a)
  return torch.from_numpy(np.array(a, dtype=np.float64 if a.dtype == np.float64 else np.float32))


def mse_loss(out, x, target=None):
  """The reconstruction objective of the twins of reconstruction-trained models: MSE against
  the input, or the frames a Seq2Seq model predicts (`out['target']`)."""
  del target
  return torch.mean((out['recon'].float() - out.get('target', x)) ** 2)


def _copy_layer(m, p):
  k = np.asarray(p['kernel'])
  sp = tuple(range(k.ndim - 2))                       # spatial axes of the Flax kernel
  if isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
    m.weight.data = tensor(k.transpose(k.ndim - 2, k.ndim - 1, *sp))
  elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
    m.weight.data = tensor(k.transpose(k.ndim - 1, k.ndim - 2, *sp))
  elif isinstance(m, nn.Linear):
    m.weight.data = tensor(k.T)
  else:
    raise TypeError(f'cannot copy a kernel into {type(m).__name__}')
  if 'bias' in p:
    m.bias.data = tensor(p['bias'])
  elif m.bias is not None:
    raise ValueError(f'{type(m).__name__} has a bias the Flax layer lacks')


def _copy_bn(m, p, s):
  m.weight.data, m.bias.data = tensor(p['scale']), tensor(p['bias'])
  if not isinstance(m, nn.GroupNorm):           # GroupNorm keeps no running statistics
    m.running_mean.data, m.running_var.data = tensor(s['mean']), tensor(s['var'])


def _plain(tree):
  return {k: _plain(v) if hasattr(v, 'items') else v for k, v in tree.items()}


def port(twin: nn.Module, variables) -> nn.Module:
  """Copies Flax `variables` ({'params', 'batch_stats'}) of the same model into `twin`."""
  def walk(params, stats, path):
    module = twin.get_submodule('.'.join(path)) if path else twin
    if 'kernel' in params:
      _copy_layer(module, params)
      return
    if 'scale' in params:
      _copy_bn(module, params, stats)
      return
    for key, value in params.items():
      if isinstance(value, dict):
        walk(value, stats.get(key, {}), path + [key])
      elif key in dict(module.named_children()):          # an ACB branch kernel
        _copy_layer(getattr(module, key), {'kernel': value})
      else:                                               # a raw parameter (bias, memory)
        getattr(module, key).data = tensor(value)
  walk(_plain(variables['params']), _plain(variables.get('batch_stats', {})), [])
  return twin
