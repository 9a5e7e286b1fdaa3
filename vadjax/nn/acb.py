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
from vadjax.nn.layers import batch_norm, conv2d, conv_transpose2d

BRANCHES = ('square', 'hor', 'ver')
_EPS = 1e-5


def branch_geometry(k: int, p: int):
  """{branch: (kernel shape, ((lo, hi) pad along H, (lo, hi) along W))} of a k×k layer with
  padding p. Negative pads crop."""
  c = (k - 1) // 2
  full, short = (p, p), (p - c, p - (k - 1 - c))
  return {'square': ((k, k), (full, full)), 'hor': ((1, k), (short, full)),
          'ver': ((k, 1), (full, short))}


def _crop_or_pad(x, pads):
  """Pads (positive) or crops (negative) H and W by per-side amounts."""
  x = jnp.pad(x, ((0, 0),) + tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads) + ((0, 0),))
  return x[:, max(-pads[0][0], 0):x.shape[1] - max(-pads[0][1], 0),
           max(-pads[1][0], 0):x.shape[2] - max(-pads[1][1], 0)]


def _conv(x, w, stride, pads, impl):
  """A conv with per-side (possibly negative) padding, through `conv2d`'s fast forms."""
  return conv2d(_crop_or_pad(x, pads), w, stride, 0, impl)


def _conv_transpose(x, w, stride, pads, output_padding, impl):
  """PyTorch's ConvTranspose2d with per-side (possibly negative) padding `pads`: the
  padding-0 transposed conv (fast forms), then the padding's crop (or, negative, zeros)."""
  y = conv_transpose2d(x, w, stride, 0, output_padding, impl)
  return _crop_or_pad(y, tuple((-lo, -hi) for lo, hi in pads))


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
  impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    total = 0.0
    for name, (shape, pads) in branch_geometry(self.kernel, self.padding).items():
      w = self.param(name, nn.initializers.lecun_normal(),
                     (*shape, x.shape[-1], self.features)).astype(self.dtype)
      h = x.astype(self.dtype)
      if self.transposed:
        y = _conv_transpose(h, w, self.stride, pads, self.output_padding, self.impl)
      else:
        y = _conv(h, w, self.stride, pads, self.impl)
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
