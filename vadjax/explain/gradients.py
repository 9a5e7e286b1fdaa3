"""The gradient explainers: ε-LRP maps (seed 001 §3.8.1, `lrp.py`), gradient × input and
integrated gradients (cheap baselines beyond the seed), and the gradient counterfactual
(§3.8.4 beyond the seed's rectangles: the smallest L1 change that brings an anomalous input
under the decision threshold, found with optax).

Every function takes `f`, a pytree function images → scores (`Explained.fn`), so jitting
them passes the weights as arguments; maps are (N, H, W), the sum over channels.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from vadjax.explain import lrp as lrp_lib
from vadjax.explain.target import output_relevance


@jax.jit
def gradient_x_input(f, x):
  g = jax.grad(lambda x: jnp.sum(f(x)))(x)
  return jnp.sum(x * g, axis=-1)


@functools.partial(jax.jit, static_argnames='steps')
def integrated_gradients(f, x, baseline, steps: int = 32):
  """Sundararajan et al. 2017, midpoint rule over `steps` points of the straight path from
  `baseline`; Σ IG ≈ f(x) − f(baseline) (completeness)."""
  alphas = (jnp.arange(steps, dtype=x.dtype) + 0.5) / steps
  path = baseline[None] + alphas[:, None, None, None, None] * (x - baseline)[None]
  flat = path.reshape(-1, *x.shape[1:])
  g = jax.grad(lambda p: jnp.sum(f(p)))(flat).reshape(path.shape)
  return jnp.sum((x - baseline) * jnp.mean(g, axis=0), axis=-1)


@functools.partial(jax.jit, static_argnames=('cut', 'eps'))
def _lrp(model_output, cut, x, eps):
  y = model_output(x)
  seen = cut(x).reshape(y.shape) if y.ndim > 1 else None
  relevance = output_relevance(y, seen, x.shape[0])
  return jnp.sum(lrp_lib.lrp(model_output, x, relevance, eps), axis=-1)


def lrp_check(explained) -> None:
  """Raises `LRPUnsupported` (naming the operations) if ε-LRP does not cover the model."""
  lrp_lib.check(explained.model_output(), jnp.zeros((1, *explained.image_shape), jnp.float32))


def lrp(explained, x, eps: float = 1e-6):
  """ε-LRP maps of images x (a clear error for a model the rule does not cover)."""
  lrp_check(explained)
  return _lrp(explained.model_output(), explained.cut, jnp.asarray(x), eps)


_ADAM = optax.adam(0.01)


def _counterfactual_loss(f, x, delta, threshold, l1, margin):
  s = f(jnp.clip(x + delta, 0.0, 1.0))
  per = l1 * jnp.mean(jnp.abs(delta), axis=(1, 2, 3)) + jax.nn.relu(s - (threshold - margin))
  return jnp.sum(per)


@jax.jit
def _counterfactual_step(f, x, delta, state, threshold, l1, margin):
  g = jax.grad(_counterfactual_loss, argnums=2)(f, x, delta, threshold, l1, margin)
  updates, state = _ADAM.update(g, state, delta)
  return optax.apply_updates(delta, updates), state


def counterfactual(f, x, threshold: float, steps: int = 200, l1: float = 0.02,
                   margin: float = 0.02):
  """δ minimising l1·mean|δ| + max(0, f(x + δ) − (threshold − margin)) per image, x + δ kept
  in [0, 1] (Adam, lr 0.01; a Python loop over one jitted step, since convolutions inside
  lax.scan are slow on XLA:CPU). Returns (δ, f(x + δ)); δ's map is Σ_c |δ|."""
  x = jnp.asarray(x)
  delta = jnp.zeros_like(x)
  state = _ADAM.init(delta)
  for _ in range(steps):
    delta, state = _counterfactual_step(f, x, delta, state, threshold, l1, margin)
  delta = jnp.clip(x + delta, 0.0, 1.0) - x
  return delta, f(x + delta)
