"""SSIM and the compound SSIM loss of seed 001 (001_22531b3c5af6eb6c.txt §3.4, §4.6).

SSIM (Wang et al.) with an 11×11 Gaussian window (σ = 1.5), k1 = 0.01, k2 = 0.03, data range
1, 'valid' filtering (only windows fully inside the image, as pytorch_msssim in the seed's
code and scikit-image's cropped mean), computed per channel and averaged. The compound loss
L = η·MSE + (1 − η)·(1 − SSIM), η = 0.5 (`ssim.weight`), is both the training loss and the
anomaly score, as in seed 001 §4.6; it works for any model that outputs `recon` (images or
clips, whose frames are scored one by one).
"""

import jax
import jax.numpy as jnp
import numpy as np

from vadjax.methods import METHODS
from vadjax.methods.reconstruction import Reconstruction, frame_at, target, weighted_mean
from vadjax.registry import UserError


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  return (g / g.sum()).astype(np.float32)


def _filter(x, g):
  """Separable valid Gaussian filter of (N, H, W, C) over H and W, channel by channel."""
  n, h, w, c = x.shape
  k = g.shape[0]
  x = jnp.moveaxis(x, -1, 1).reshape(n * c, h, w, 1)
  kernel_h = jnp.asarray(g).reshape(k, 1, 1, 1)
  kernel_w = jnp.asarray(g).reshape(1, k, 1, 1)
  dn = ('NHWC', 'HWIO', 'NHWC')
  x = jax.lax.conv_general_dilated(x, kernel_h.astype(x.dtype), (1, 1), 'VALID',
                                   dimension_numbers=dn)
  x = jax.lax.conv_general_dilated(x, kernel_w.astype(x.dtype), (1, 1), 'VALID',
                                   dimension_numbers=dn)
  return jnp.moveaxis(x.reshape(n, c, h - k + 1, w - k + 1), 1, -1)


def ssim_map(x, y, window: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03,
             data_range: float = 1.0):
  """Local SSIM of two (N, H, W, C) batches: (N, H − window + 1, W − window + 1, C)."""
  if x.shape != y.shape:
    raise ValueError(f'ssim needs equal shapes, got {x.shape} and {y.shape}')
  if min(x.shape[1:3]) < window:
    raise ValueError(f'ssim with an {window}×{window} window needs images of at least that '
                     f'size, got {x.shape[1:3]}')
  g = gaussian_window(window, sigma)
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  mx, my = _filter(x, g), _filter(y, g)
  sxx = _filter(x * x, g) - mx * mx
  syy = _filter(y * y, g) - my * my
  sxy = _filter(x * y, g) - mx * my
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim(x, y, **kwargs):
  """Mean SSIM per sample, (N,)."""
  return jnp.mean(ssim_map(x, y, **kwargs), axis=(1, 2, 3))


def _frames(a):
  return a.reshape(-1, *a.shape[-3:])


@METHODS.register('ssim')
class SSIMCompound(Reconstruction):
  """η·MSE + (1 − η)·(1 − SSIM) as loss and score; pixel map η·e² + (1 − η)(1 − SSIM map)
  with the SSIM map's border (half a window) filled from its edge."""

  group = 'ssim'
  DEFAULTS = {'weight': 0.5}

  def __init__(self, config=None):
    super().__init__(config)
    self.eta = self.s['weight']
    if not 0.0 <= self.eta <= 1.0:
      raise UserError(f'ssim.weight must be in [0, 1], got {self.eta}')

  def _compound(self, outputs, batch):
    x, r = target(outputs, batch), outputs['recon']
    err = jnp.square(r - x)
    mse = jnp.mean(err, axis=tuple(range(1, err.ndim)))
    s = ssim(_frames(r), _frames(x)).reshape(x.shape[0], -1).mean(axis=1)
    return self.eta * mse + (1 - self.eta) * (1 - s), mse, s

  def loss_fn(self, outputs, batch):
    per_sample, mse, s = self._compound(outputs, batch)
    loss = weighted_mean(per_sample + outputs.get('regularizer', 0.0), batch)
    return loss, {'mse': weighted_mean(mse, batch), 'ssim': weighted_mean(s, batch)}

  def score_fn(self, outputs, batch):
    per_sample, _, _ = self._compound(outputs, batch)
    x, r = target(outputs, batch), outputs['recon']
    if x.ndim == 5:              # clips: the map of the scored frame
      offset = (batch['offset'] if 'offset' in batch else
                jnp.full(x.shape[:1], x.shape[1] // 2))
      x, r = frame_at(x, offset), frame_at(r, offset)
    m = 1 - jnp.mean(ssim_map(r, x), axis=-1)
    # the border filled from the edge: a gather of clipped rows and columns (what
    # jnp.pad(mode='edge') computes, in a form that exports with a symbolic batch)
    rows = np.clip(np.arange(x.shape[1]) - (x.shape[1] - m.shape[1]) // 2, 0, m.shape[1] - 1)
    cols = np.clip(np.arange(x.shape[2]) - (x.shape[2] - m.shape[2]) // 2, 0, m.shape[2] - 1)
    m = jnp.take(jnp.take(m, rows, axis=1), cols, axis=2)
    pixel = self.eta * jnp.mean(jnp.square(r - x), axis=-1) + (1 - self.eta) * m
    return {'score': per_sample, 'pixel': pixel}
