"""The gradient explainers: ε-LRP and EpsilonPlus maps, the latter also with z^B on the
first layer (seed 001 §3.8.1, `lrp.py`), gradient × input and integrated gradients (cheap
baselines beyond the seed), and the gradient counterfactual
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


@functools.partial(jax.jit, static_argnames=('cut', 'eps', 'rule'))
def _lrp(model_output, cut, x, eps, rule):
  y = model_output(x)
  seen = cut(x).reshape(y.shape) if y.ndim > 1 else None
  relevance = output_relevance(y, seen, x.shape[0])
  return jnp.sum(lrp_lib.lrp(model_output, x, relevance, eps, rule), axis=-1)


def lrp_check(explained, rule: str = 'epsilon') -> None:
  """Raises `LRPUnsupported` (naming the operations) if the LRP rule does not cover the
  model."""
  lrp_lib.check(explained.model_output(), jnp.zeros((1, *explained.image_shape), jnp.float32),
                rule)


def lrp(explained, x, eps: float = 1e-6, rule: str = 'epsilon'):
  """LRP maps of images x: ε-LRP, EpsilonPlus (`rule='epsilon_plus'`: z⁺ on convs), or
  EpsilonPlus with z^B on the first layer over the images' [0, 1] (`'epsilon_plus_box'`); a
  clear error for a model the rule does not cover."""
  lrp_check(explained, rule)
  return _lrp(explained.model_output(), explained.cut, jnp.asarray(x), eps, rule)


_LR = 0.01
_SGD = optax.sgd(_LR, momentum=0.9)


def _hinge(f, x, delta, threshold, margin):
  s = f(jnp.clip(x + delta, 0.0, 1.0))
  return jnp.sum(jax.nn.relu(s - (threshold - margin)))


@jax.jit
def _counterfactual_step(f, x, delta, state, threshold, l1, margin):
  g = jax.grad(_hinge, argnums=2)(f, x, delta, threshold, margin)
  # per image, scaled so its largest component is 1: the step does not depend on how small
  # a score's gradients are, and components keep their relative size (unlike Adam's)
  g = g / (jnp.max(jnp.abs(g), axis=(1, 2, 3), keepdims=True) + 1e-30)
  updates, state = _SGD.update(g, state, delta)
  delta = optax.apply_updates(delta, updates)
  delta = jnp.sign(delta) * jax.nn.relu(jnp.abs(delta) - _LR * l1)     # the L1 proximal step
  return jnp.clip(x + delta, 0.0, 1.0) - x, state


def counterfactual(f, x, threshold: float, steps: int = 200, l1: float = 0.3,
                   margin: float = 0.02):
  """A sparse δ that brings f(x + δ) under `threshold − margin`, x + δ in [0, 1]: proximal
  gradient descent on the hinge max(0, f(x + δ) − threshold + margin) with an L1 penalty
  (optax SGD with momentum, lr 0.01, each image's gradient scaled to a largest component of
  1; the soft threshold lr·l1 keeps every component whose gradient stays under l1 of the
  largest at zero). A Python loop over one jitted step: convolutions inside lax.scan are
  slow on XLA:CPU. Returns (δ, f(x + δ)); δ's map is Σ_c |δ|."""
  x = jnp.asarray(x)
  delta = jnp.zeros_like(x)
  state = _SGD.init(delta)
  for _ in range(steps):
    delta, state = _counterfactual_step(f, x, delta, state, threshold, l1, margin)
  return delta, f(x + delta)
