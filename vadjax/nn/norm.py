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

After a conv (`vadjax.nn.layers.conv_bn`), training on CPU takes the conv's bias unadded
(`shift`) and the statistics in one pass, Σx and Σx² (`_train_shifted`): YNNPACK's
reductions read a materialised operand, so the bias add and the two-pass form's x − mean
were full-size passes of their own (docs/speed.md, Round 3). BCAE1's enc0 + BN + ReLU
forward 43.9 → 31.8 ms; train steps, paired: BCAE1 1.033×, ADACL 1.061×, KS-CAE (fused)
1.015×, MemAE-3D 1.013× (2026-12-05, 2-core Xeon). The one-pass variance loses
~1e-7·(mean/std)² relatively (float32), as Flax's default `use_fast_variance` does; the
conv's bias is not in the mean it sees.
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


ONE_PASS_FROM = 4096


def _one_pass_stats(x):
  """Per-channel mean and biased variance from Σx and Σx², in float32. Read straight from a
  conv's output, both sums are YNNPACK reductions with no pass before them; the two-pass
  form writes x − mean out first (see `BatchNorm`)."""
  axes = tuple(range(x.ndim - 1))
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  mean = x.mean(axes)
  return mean, jnp.maximum(jnp.square(x).mean(axes) - jnp.square(mean), 0.)


def _train_autodiff(x, scale, bias, eps):
  mean, var = _stats(x)
  return _normalize(x, mean, var, scale, bias, eps), mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _train_closed_form(x, scale, bias, eps):
  return _train_autodiff(x, scale, bias, eps)


def _closed_fwd(x, scale, bias, eps, stats=_stats):
  mean, var = stats(x)
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _train_shifted(x, shift, scale, bias, eps):
  """Training BatchNorm of x + shift, for a conv's output x and its bias `shift`, without
  computing x + shift: the shift moves the batch mean and nothing else, so the output is
  that of x (exactly, hence a zero gradient for the shift) and the mean is x's plus the
  shift. The statistics are `_one_pass_stats` of the conv's output from `ONE_PASS_FROM`
  values per channel on; below, the saving is small, and few values (a 1×1 embedding) can
  have a mean far above their spread (`vadjax.nn.layers.batch_norm`)."""
  (y, mean, var), _ = _shifted_fwd(x, shift, scale, bias, eps)
  return y, mean, var


def _shifted_fwd(x, shift, scale, bias, eps):
  one_pass = x.size // x.shape[-1] >= ONE_PASS_FROM
  (y, mean, var), res = _closed_fwd(x, scale, bias, eps, _one_pass_stats if one_pass else _stats)
  return (y, mean + shift, var), (res, jnp.zeros_like(shift))


def _shifted_bwd(eps, res, cotangents):
  res, zero_shift = res
  dx, dscale, dbias = _closed_bwd(eps, res, cotangents)
  return dx, zero_shift, dscale, dbias


_train_shifted.defvjp(_shifted_fwd, _shifted_bwd)


class BatchNorm(nn.Module):
  """`nn.BatchNorm(use_fast_variance=False)` over the last axis (see the module doc)."""
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x, shift=None):
    """`shift`: a per-channel offset of x not yet added (the bias of the conv before, see
    `vadjax.nn.layers.conv_bn`); the result is that of x + shift."""
    c = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    scale = self.param('scale', nn.initializers.ones, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    cpu_training = parallel.backend() == 'cpu' and not self.use_running_average
    if shift is not None and not cpu_training:
      x, shift = x + shift, None
    if self.use_running_average:
      y = _normalize(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon)
    else:
      if shift is not None:
        y, mean, var = _train_shifted(x, shift, scale, bias, self.epsilon)
      else:
        train = _train_closed_form if cpu_training else _train_autodiff
        y, mean, var = train(x, scale, bias, self.epsilon)
      if not self.is_initializing():
        m = self.momentum
        ra_mean.value = m * ra_mean.value + (1 - m) * mean
        ra_var.value = m * ra_var.value + (1 - m) * var
    return y.astype(self.dtype or jnp.result_type(x, scale))
