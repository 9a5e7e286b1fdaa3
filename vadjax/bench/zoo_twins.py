"""PyTorch twins of the image model zoo: seed 001's attention CAEs and BCAE2 / KS-CAE, seed
000's CBAM-AE and LTPA-AE.

Their submodules carry the Flax names (`enc0`, `enc0_bn`, `enc0_se`, `input_attention`, ...),
so `port_by_name` copies variables by path, whatever the architecture.
"""

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vadjax.bench.twins import TWINS, _bn, _copy_bn, _t
from vadjax.models.conv_ae import _valid_out
from vadjax.models.ks_cae import DECODER, ENCODER
from vadjax.nn.acb import branch_geometry


class SqueezeExcite(nn.Module):
  def __init__(self, c, reduction=16):
    super().__init__()
    self.squeeze = nn.Linear(c, max(c // reduction, 1), bias=False)
    self.excite = nn.Linear(max(c // reduction, 1), c, bias=False)

  def forward(self, x):
    s = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean((2, 3))))))
    return x * s[:, :, None, None]


class AugmentedConv(nn.Module):
  def __init__(self, cin, features, kernel, stride, key_depth, value_depth=1, heads=1):
    super().__init__()
    self.dk, self.dv, self.nh = key_depth, value_depth, heads
    self.conv = nn.Conv2d(cin, features - value_depth, kernel, stride)
    self.qkv = nn.Conv2d(cin, 2 * key_depth + value_depth, kernel, stride)
    self.attn_out = nn.Conv2d(value_depth, value_depth, 1)

  def forward(self, x):
    conv, qkv = self.conv(x), self.qkv(x)
    b, _, h, w = qkv.shape
    q, k, v = torch.split(qkv.flatten(2), [self.dk, self.dk, self.dv], dim=1)
    q, k, v = (t.reshape(b, self.nh, -1, h * w) for t in (q, k, v))
    q = q * (self.dk // self.nh) ** -0.5
    weights = torch.softmax(torch.einsum('bndq,bndk->bnqk', q, k), dim=-1)
    attn = torch.einsum('bnqk,bndk->bndq', weights, v).reshape(b, self.dv, h, w)
    received = weights.mean((1, 2)).reshape(b, h, w)
    return torch.cat([conv, self.attn_out(attn)], 1), received


class InputAttention(nn.Module):
  def __init__(self, c, kind='sa', hidden=64, kernels=(3, 5), penalty=1e-6, sa_form='paper'):
    super().__init__()
    self.kind, self.penalty, self.form = kind, penalty, sa_form
    self.conv1 = nn.Conv2d(c, hidden, kernels[0], 1, kernels[0] // 2)
    self.conv2 = nn.Conv2d(hidden, c, kernels[1], 1, kernels[1] // 2)
    self.bn = _bn(c)

  def forward(self, x):
    a = self.conv2(self.conv1(x))
    if self.kind == 'sa':
      amap = torch.sigmoid(self.bn(a if self.form == 'paper' else x * a))
      xh = x * amap if self.form == 'paper' else amap
      return xh, amap.mean(1), self.penalty * amap.flatten(1).norm(dim=1)
    a = self.bn(a)
    sam = torch.softmax(a.sum(3, keepdim=True), dim=2) * torch.softmax(a.sum(2, keepdim=True),
                                                                       dim=3)
    lo = sam.flatten(1).min(1).values[:, None, None, None]
    hi = sam.flatten(1).max(1).values[:, None, None, None]
    sam = 0.3 + 0.7 * (sam - lo) / torch.clamp(hi - lo, min=1e-12)
    return x * sam, sam.mean(1), torch.zeros(x.shape[0])


class _Named(nn.Module):
  flax_names = True        # `vadjax.bench.twins.port` copies by name

  def add(self, name, module):
    self.add_module(name, module)
    return module


class AttentionCAE(_Named):
  """Twin of BCAE1 with `attention` / `input_attention` (vadjax.models.conv_ae)."""

  def __init__(self, channels=1, input_size=(128, 128), filters=(64, 64, 64, 96, 96),
               leaky_slope=0.2, attention='none', input_attention='none', se_reduction=16,
               aa_key_ratio=0.125, aa_value_depth=1, aa_heads=1, sa_hidden=64,
               sa_penalty=1e-6, sa_form='paper', name=None):
    super().__init__()
    defaults = {'se_cae': ('se', 'none'), 'aa_cae': ('aa', 'none'), 'sa_cae': ('none', 'sa'),
                'ssa_cae': ('none', 'ssa')}
    if name is not None:
      attention, input_attention = defaults[name]
    self.attention, self.slope = attention, leaky_slope
    sizes = [tuple(input_size)]
    for _ in range(4):
      sizes.append(tuple(_valid_out(s, 3, 2) for s in sizes[-1]))
    last_k = tuple(min(4, s) for s in sizes[-1])
    self.inp = None
    if input_attention != 'none':
      self.inp = self.add('input_attention', InputAttention(
          channels, input_attention, sa_hidden, penalty=sa_penalty, sa_form=sa_form))
    cin = channels
    for i, f in enumerate(filters):
      k, s = (3, 2) if i < 4 else (last_k, 1)
      if attention == 'aa':
        self.add(f'enc{i}', AugmentedConv(cin, f, k, s, max(int(f * aa_key_ratio), 1),
                                          aa_value_depth, aa_heads))
      else:
        self.add(f'enc{i}', nn.Conv2d(cin, f, k, s))
      self.add(f'enc{i}_bn', _bn(f))
      if attention == 'se' and i < 4:
        self.add(f'enc{i}_se', SqueezeExcite(f, se_reduction))
      cin = f
    size = sizes[-1]
    size = tuple(_valid_out(a, b, 1) for a, b in zip(size, last_k))
    for i, f in enumerate(list(filters[3::-1]) + [channels]):
      level = 4 - i
      if level == 4:
        k, s = last_k, 1
      else:
        k, s = tuple(t - 2 * (c - 1) for t, c in zip(sizes[level], size)), 2
      self.add(f'dec{i}', nn.ConvTranspose2d(cin, f, k, s))
      if i < 4:
        self.add(f'dec{i}_bn', _bn(f))
        if attention == 'se':
          self.add(f'dec{i}_se', SqueezeExcite(f, se_reduction))
      cin, size = f, sizes[level]

  def forward(self, x):
    out, maps = {}, {}
    if self.inp is not None:
      x, maps['input'], out['regularizer'] = self.inp(x)
    h = x
    for i in range(5):
      layer = getattr(self, f'enc{i}')
      h = layer(h)
      if isinstance(h, tuple):
        h, maps[f'enc{i}'] = h
      h = torch.relu(getattr(self, f'enc{i}_bn')(h))
      if hasattr(self, f'enc{i}_se'):
        h = getattr(self, f'enc{i}_se')(h)
    out['latent'] = h.permute(0, 2, 3, 1).flatten(1)
    for i in range(5):
      h = getattr(self, f'dec{i}')(h)
      if i < 4:
        h = F.leaky_relu(getattr(self, f'dec{i}_bn')(h), self.slope)
        if hasattr(self, f'dec{i}_se'):
          h = getattr(self, f'dec{i}_se')(h)
    out['recon'] = torch.sigmoid(h)
    if maps:
      out['attention'] = maps
    return out


class CBAM(nn.Module):
  def __init__(self, c, reduction=16, kernel=7):
    super().__init__()
    self.mlp0 = nn.Linear(c, max(c // reduction, 1))
    self.mlp1 = nn.Linear(max(c // reduction, 1), c)
    self.spatial = nn.Conv2d(2, 1, kernel, 1, kernel // 2, bias=False)
    self.spatial_bn = _bn(1)

  def forward(self, x):
    def mlp(v):
      return self.mlp1(torch.relu(self.mlp0(v)))
    x = x * torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
    s = torch.sigmoid(self.spatial_bn(self.spatial(pooled)))
    return x * s, s[:, 0]


class PayAttention(nn.Module):
  def __init__(self, c, global_c, compatibility='pc'):
    super().__init__()
    self.compatibility = compatibility
    self.project = nn.Linear(global_c, c)
    if compatibility == 'pc':
      self.u = nn.Conv2d(c, 1, 1, bias=False)

  def forward(self, local, g):
    b, c, h, w = local.shape
    g = self.project(g)[:, :, None, None]
    logits = self.u(local + g)[:, 0] if self.compatibility == 'pc' else (local * g).sum(1)
    a = torch.softmax(logits.reshape(b, h * w), dim=1)
    return torch.einsum('bn,bcn->bc', a, local.flatten(2)), a.reshape(b, h, w)


class AttentionDeepAE(_Named):
  """Twin of the deep AE with `attention` 'cbam' / 'ltpa' (vadjax.models.conv_ae)."""

  def __init__(self, channels=1, input_size=(32, 32), filters=(8, 16, 32, 64, 128),
               strides=(1, 2, 2, 2, 1), fc_features=(512, 128, 512), attention=None,
               compatibility='pc', attention_blocks=(2, 4), name=None):
    super().__init__()
    self.attention = attention or {'cbam_ae': 'cbam', 'ltpa_ae': 'ltpa'}[name]
    self.blocks = tuple(attention_blocks)
    down = int(np.prod(strides))
    self.shape = (filters[-1], input_size[0] // down, input_size[1] // down)
    cin = channels
    for i, (f, s) in enumerate(zip(filters, strides)):
      self.add(f'enc{i}', nn.Conv2d(cin, f, 3, s, 1))
      self.add(f'enc{i}_bn', _bn(f))
      if i + 1 in self.blocks and self.attention == 'cbam':
        self.add(f'cbam{i + 1}', CBAM(f))
      elif i + 1 in self.blocks:
        self.add(f'ltpa{i + 1}', PayAttention(f, filters[-1], compatibility))
      cin = f
    flat = int(np.prod(self.shape))
    extra = sum(filters[b - 1] for b in self.blocks) if self.attention == 'ltpa' else 0
    widths = [flat + extra] + list(fc_features) + [flat]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
      self.add(f'fc{i}', nn.Linear(a, b))
    self.n_fc, self.latent_index = len(widths) - 1, len(fc_features) // 2
    self.strides = strides
    outs = list(filters[-2::-1]) + [channels]
    for i, (f, s) in enumerate(zip(outs, strides[::-1])):
      self.add(f'dec{i}', nn.ConvTranspose2d(cin, f, 3, s, 1, s - 1))
      if i < len(outs) - 1:
        self.add(f'dec{i}_bn', _bn(f))
      cin = f
    self.n_dec = len(outs)

  def forward(self, x):
    h, maps, locals_ = x, {}, []
    for i in range(len(self.strides)):
      h = F.leaky_relu(getattr(self, f'enc{i}_bn')(getattr(self, f'enc{i}')(h)), 0.2)
      if hasattr(self, f'cbam{i + 1}'):
        h, maps[f'cbam{i + 1}'] = getattr(self, f'cbam{i + 1}')(h)
      elif hasattr(self, f'ltpa{i + 1}'):
        locals_.append((i + 1, h))
    z = h.permute(0, 2, 3, 1).flatten(1)
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
    return {'recon': h, 'latent': latent, 'attention': maps}


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
        self.add_module(f'{name}_bn', _bn(features))
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


class BCAE2(_Named):
  """Twin of `vadjax.models.ks_cae.BCAE2` (block 'plain' | 'acb' | 'fused')."""

  def __init__(self, channels=1, input_size=(128, 128), filters=(64, 128, 256, 512, 300),
               decoder_filters=(512, 256, 128, 64, 16), width=None, block=None,
               strengthened=4, leaky_slope=0.2, name=None):
    super().__init__()
    width = width if width is not None else (0.5 if name == 'ks_cae' else 1.0)
    self.block = block or ('acb' if name == 'ks_cae' else 'plain')
    self.slope = leaky_slope
    scale = lambda f: max(int(round(f * width)), 1)   # noqa: E731
    enc = [scale(f) for f in filters[:-1]] + [filters[-1]]
    dec = [scale(f) for f in decoder_filters] + [channels]
    size = input_size[0]
    for k, s in ENCODER:
      size = _valid_out(size, k, s)
    for k, s in DECODER:
      size = (size - 1) * s + k
    layers = [(f'enc{i}', k, s, f, False, True, i < strengthened)
              for i, ((k, s), f) in enumerate(zip(ENCODER, enc))]
    n = len(DECODER) + 1
    layers += [(f'dec{i}', k, s, f, True, i < n - 1, i >= n - strengthened)
               for i, ((k, s), f) in enumerate(zip(list(DECODER) + [(input_size[0] - size + 1, 1)],
                                                   dec))]
    cin = channels
    for name_, k, s, f, transposed, norm, acb in layers:
      if acb and self.block == 'acb':
        self.add(name_, AsymmetricBlock(cin, f, k, s, transposed=transposed, norm=norm))
      else:
        self.add(name_, (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, f, k, s))
        if norm and not (acb and self.block == 'fused'):
          self.add(f'{name_}_bn', _bn(f))
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


def _copy_layer(m, p):
  k = np.asarray(p['kernel'])
  if isinstance(m, nn.ConvTranspose2d):
    m.weight.data = _t(k.transpose(2, 3, 0, 1))
  elif isinstance(m, nn.Conv2d):
    m.weight.data = _t(k.transpose(3, 2, 0, 1))
  elif isinstance(m, nn.Linear):
    m.weight.data = _t(k.T)
  else:
    raise TypeError(f'cannot copy a kernel into {type(m).__name__}')
  if 'bias' in p:
    m.bias.data = _t(p['bias'])
  elif m.bias is not None:
    raise ValueError(f'{type(m).__name__} has a bias the Flax layer lacks')


def port_by_name(twin: nn.Module, variables) -> nn.Module:
  """Copies Flax variables into a twin whose submodules carry the Flax module names."""
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
      else:                                               # an ACB branch bias
        getattr(module, key).data = _t(value)
  walk(_plain(variables['params']), _plain(variables.get('batch_stats', {})), [])
  return twin


def _plain(tree):
  return {k: _plain(v) if hasattr(v, 'items') else v for k, v in tree.items()}


for _name in ('se_cae', 'aa_cae', 'sa_cae', 'ssa_cae'):
  TWINS[_name] = functools.partial(AttentionCAE, name=_name)
for _name in ('cbam_ae', 'ltpa_ae'):
  TWINS[_name] = functools.partial(AttentionDeepAE, name=_name)
TWINS['bcae2'] = functools.partial(BCAE2, name='bcae2')
TWINS['ks_cae'] = functools.partial(BCAE2, name='ks_cae')
TWINS['ks_cae_fused'] = functools.partial(BCAE2, name='ks_cae', block='fused')
