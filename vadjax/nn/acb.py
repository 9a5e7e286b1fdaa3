"""Asymmetric convolution / deconvolution blocks and their exact fusion (seed 001
§3.3.1–3.3.2, eq. 3.4; Ding et al., ACNet).

An ACB sums three branches over the same input: a k×k conv, a 1×k conv and a k×1 conv, each
with its own BatchNorm (or its own bias, `norm=False`). The asymmetric kernels sit on the
square kernel's centre row and column c = ⌊(k−1)/2⌋: a 1×k branch is a conv whose padding
along the height is (p − c, p − (k−1−c)) (negative padding crops), so its outputs line up
with the square branch's. An ADB does the same with transposed convs; there the same shift is
a height padding of (p − c, p − (k−1−c)) in PyTorch's transposed-conv sense (the seed's code reaches matching shapes with
dilation and output padding instead, which aligns the 1×k kernel with the *first* row of the
square kernel; centring keeps the block symmetric, as ACNet).

Because every branch is linear up to its (inference-mode) BN, `fuse` folds each BN into its
kernel and bias and adds the 1×k / k×1 kernels into the k×k kernel's centre row / column: one
plain k×k conv with a bias, the same outputs, the plain layer's cost.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from vadjax.nn.layers import _DN, _pair, batch_norm

BRANCHES = ('square', 'hor', 'ver')
_EPS = 1e-5


def branch_geometry(k: int, p: int):
  """{branch: (kernel shape, ((lo, hi) pad along H, (lo, hi) along W))} of a k×k layer with
  padding p. Negative pads crop."""
  c = (k - 1) // 2
  full, short = (p, p), (p - c, p - (k - 1 - c))
  return {'square': ((k, k), (full, full)), 'hor': ((1, k), (short, full)),
          'ver': ((k, 1), (full, short))}


def _conv(x, w, stride, pads):
  return lax.conv_general_dilated(x, w, _pair(stride), pads, dimension_numbers=_DN)


def _conv_transpose(x, w, stride, pads, output_padding):
  """PyTorch's ConvTranspose2d with per-side (possibly negative) padding `pads`."""
  k, s, op = w.shape[:2], _pair(stride), _pair(output_padding)
  full = [(k[d] - 1 - pads[d][0], k[d] - 1 - pads[d][1] + op[d]) for d in range(2)]
  return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), full, lhs_dilation=s,
                                  dimension_numbers=_DN)


class AsymmetricBlock(nn.Module):
  """ACB (`transposed=False`) or ADB (`transposed=True`) with kernel k, stride, padding.

  Parameters: `<branch>` {'kernel' (kh, kw, I, O)[, 'bias']} and, with `norm`, `<branch>_bn`.
  """
  features: int
  kernel: int = 3
  stride: int = 1
  padding: int = 0
  output_padding: int = 0
  transposed: bool = False
  norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    total = 0.0
    for name, (shape, pads) in branch_geometry(self.kernel, self.padding).items():
      w = self.param(name, nn.initializers.lecun_normal(),
                     (*shape, x.shape[-1], self.features)).astype(self.dtype)
      h = x.astype(self.dtype)
      if self.transposed:
        y = _conv_transpose(h, w, self.stride, pads, self.output_padding)
      else:
        y = _conv(h, w, self.stride, pads)
      if self.norm:
        y = batch_norm(train, self.dtype, f'{name}_bn')(y)
      else:
        y = y + self.param(f'{name}_bias', nn.initializers.zeros,
                           (self.features,)).astype(self.dtype)
      total = total + y
    return total


def fuse(params: dict, stats: dict | None = None) -> dict:
  """One block's branches → {'kernel' (k, k, I, O), 'bias' (O,)} of the equivalent plain
  layer (`vadjax.nn.Conv` / `ConvTranspose`). `params`/`stats` are the block's own
  variables; stats are needed when the block has BatchNorms."""
  k = np.asarray(params['square']).shape[0]
  c = (k - 1) // 2
  out = np.asarray(params['square']).shape[-1]
  kernel = np.zeros((k, k) + np.asarray(params['square']).shape[2:], np.float64)
  bias = np.zeros(out, np.float64)
  for name in BRANCHES:
    w = np.asarray(params[name], np.float64)
    if f'{name}_bn' in params:
      bn, st = params[f'{name}_bn'], stats[f'{name}_bn']
      scale = np.asarray(bn['scale'], np.float64) / np.sqrt(np.asarray(st['var'], np.float64)
                                                            + _EPS)
      w = w * scale
      bias += np.asarray(bn['bias'], np.float64) - np.asarray(st['mean'], np.float64) * scale
    else:
      bias += np.asarray(params[f'{name}_bias'], np.float64)
    if name == 'square':
      kernel += w
    elif name == 'hor':
      kernel[c:c + 1] += w
    else:
      kernel[:, c:c + 1] += w
  return {'kernel': jnp.asarray(kernel, jnp.float32), 'bias': jnp.asarray(bias, jnp.float32)}
