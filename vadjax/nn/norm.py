"""BatchNorm with Flax's variables and arithmetic, and on CPU a hand-written backward pass.

`BatchNorm` has `nn.BatchNorm`'s parameters (`scale`, `bias`) and statistics (`mean`,
`var`, biased, updated with `momentum`), its two-pass variance in float32 and its output
arithmetic, so checkpoints and the PyTorch twins are unchanged. In training on XLA:CPU its
gradient is the closed form (Ioffe & Szegedy 2015, §3):
  dx = scale·inv·(dy − mean(dy) − x̂·mean(dy·x̂)),  dscale = Σ dy·x̂,  dbias = Σ dy,
from x and the statistics only; autodiff of the forward keeps more intermediates and makes
more passes over each activation. Same-run paired step times, autodiff over this
(2026-12-03, 2-core Xeon, `experiments.bench --profile` found the passes; BUILD_NOTES.md):
BCAE1 128² train 1.057×, MemAE-3D 1.031×, ADACL 1.059× (medians of 10 paired blocks of 2
steps; every interquartile range above 1.02). On GPU and TPU JAX differentiates the forward
as before.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from vadjax import parallel


def _stats(x):
  """Per-channel mean and biased variance over every other axis, two-pass, in float32."""
  axes = tuple(range(x.ndim - 1))
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  mean = x.mean(axes)
  return mean, jnp.square(x - mean).mean(axes)


def _normalize(x, mean, var, scale, bias, eps):
  return (x - mean) * (scale * lax.rsqrt(var + eps)) + bias     # Flax's order of operations


def _train_autodiff(x, scale, bias, eps):
  mean, var = _stats(x)
  return _normalize(x, mean, var, scale, bias, eps), mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _train_closed_form(x, scale, bias, eps):
  return _train_autodiff(x, scale, bias, eps)


def _closed_fwd(x, scale, bias, eps):
  mean, var = _stats(x)
  inv = lax.rsqrt(var + eps)
  return ((x - mean) * (scale * inv) + bias, mean, var), (x, mean, inv, scale)


def _closed_bwd(eps, res, cotangents):
  """The gradient of the normalised output only: the batch statistics go to the running
  averages, which no loss depends on (their cotangents are zero and ignored)."""
  del eps
  x, mean, inv, scale = res
  dy = cotangents[0]
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  xhat = (x - mean) * inv
  dbias = dy.sum(axes)
  dscale = (dy * xhat).sum(axes)
  dx = (scale * inv) * (dy - (dbias + xhat * dscale) / n)
  return dx.astype(x.dtype), dscale, dbias


_train_closed_form.defvjp(_closed_fwd, _closed_bwd)


class BatchNorm(nn.Module):
  """`nn.BatchNorm(use_fast_variance=False)` over the last axis (see the module doc)."""
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    scale = self.param('scale', nn.initializers.ones, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    if self.use_running_average:
      y = _normalize(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon)
    else:
      train = _train_closed_form if parallel.backend() == 'cpu' else _train_autodiff
      y, mean, var = train(x, scale, bias, self.epsilon)
      if not self.is_initializing():
        m = self.momentum
        ra_mean.value = m * ra_mean.value + (1 - m) * mean
        ra_var.value = m * ra_var.value + (1 - m) * var
    return y.astype(self.dtype or jnp.result_type(x, scale))
