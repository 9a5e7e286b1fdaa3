"""vadjax's BatchNorm against Flax's nn.BatchNorm (same variables, outputs, statistics) and
its closed-form gradient against JAX's autodiff of the same forward pass and against
PyTorch's BatchNorm2d."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vadjax.nn import norm


def _both(x, train):
  ours = norm.BatchNorm(use_running_average=not train, dtype=jnp.float32)
  flax = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=jnp.float32, use_fast_variance=False)
  v = flax.init(jax.random.key(0), x)
  assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(v)
  rng = np.random.default_rng(1)
  v = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape), jnp.float32), v)
  return ours, flax, v


@pytest.mark.parametrize('train', [True, False])
def test_batch_norm_equals_flax(train):
  x = jnp.asarray(np.random.default_rng(0).normal(3, 2, (4, 5, 6, 8)), jnp.float32)
  ours, flax, v = _both(x, train)
  y1, s1 = ours.apply(v, x, mutable=['batch_stats'])
  y2, s2 = flax.apply(v, x, mutable=['batch_stats'])
  np.testing.assert_allclose(y1, y2, rtol=1e-6, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), s1, s2)


def test_closed_form_gradient_equals_autodiff_and_torch():
  """Gradients w.r.t. x, scale and bias of a loss through the training-mode layer: the
  closed form (CPU) against JAX differentiating the forward, and against torch."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(1, 3, (6, 7, 5, 4)), jnp.float32)
  g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  scale, bias = jnp.asarray(rng.uniform(0.5, 2, 4), jnp.float32), jnp.asarray(rng.normal(size=4), jnp.float32)

  def loss(f):
    return lambda x, s, b: (jnp.tanh(f(x, s, b, 1e-5)[0]) * g).sum()
  closed = jax.grad(loss(norm._train_closed_form), argnums=(0, 1, 2))(x, scale, bias)
  auto = jax.grad(loss(norm._train_autodiff), argnums=(0, 1, 2))(x, scale, bias)
  for a, b in zip(closed, auto):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.abs(b).max()))
  bn = torch.nn.BatchNorm2d(4, eps=1e-5)
  bn.weight.data, bn.bias.data = torch.tensor(np.asarray(scale)), torch.tensor(np.asarray(bias))
  xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).requires_grad_(True)
  (torch.tanh(bn(xt)) * torch.tensor(np.asarray(g)).permute(0, 3, 1, 2)).sum().backward()
  ref = (xt.grad.permute(0, 2, 3, 1).numpy(), bn.weight.grad.numpy(), bn.bias.grad.numpy())
  for a, b in zip(closed, ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())


def test_closed_form_in_bfloat16_and_under_a_second_derivative():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3, 3, 2)), jnp.bfloat16)
  m = norm.BatchNorm(use_running_average=False, dtype=jnp.bfloat16)
  v = m.init(jax.random.key(0), x)
  y, _ = m.apply(v, x, mutable=['batch_stats'])
  assert y.dtype == jnp.bfloat16
  gx = jax.grad(lambda x: m.apply(v, x, mutable=['batch_stats'])[0].astype(jnp.float32).sum())(x)
  assert gx.dtype == jnp.bfloat16 and np.isfinite(np.asarray(gx, np.float32)).all()

  def grad_norm(s):     # a gradient of a gradient (MAML-style) goes through the closed form
    f = lambda x: (norm._train_closed_form(x, s, jnp.zeros(2), 1e-5)[0] ** 3).sum()
    return jnp.square(jax.grad(f)(x.astype(jnp.float32))).sum()
  s = jnp.asarray([1.0, 2.0])
  eps = 1e-3
  numeric = (grad_norm(s + jnp.asarray([eps, 0])) - grad_norm(s - jnp.asarray([eps, 0]))) / (2 * eps)
  assert jax.grad(grad_norm)(s)[0] == pytest.approx(float(numeric), rel=2e-2)
