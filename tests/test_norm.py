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


def test_shifted_input_equals_the_sum_and_its_gradients(monkeypatch):
  """BatchNorm(x, shift=b), the conv bias handed over unadded (`layers.conv_bn`), against
  nn.BatchNorm of x + b: outputs and statistics in both modes; in training the gradients
  w.r.t. x, scale and bias equal autodiff's of the sum, and the shift's is exactly zero."""
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(0.5, 2, (4, 6, 5, 8)), jnp.float32)
  b = jnp.asarray(rng.normal(0, 3, 8), jnp.float32)
  for one_pass_from in (1, norm.ONE_PASS_FROM):         # x has 120 values per channel
    monkeypatch.setattr(norm, 'ONE_PASS_FROM', one_pass_from)
    _shifted_equals_the_sum(x, b, rng)


def _shifted_equals_the_sum(x, b, rng):
  for train in (True, False):
    ours, flax, v = _both(x, train)
    y1, s1 = ours.apply(v, x, shift=b, mutable=['batch_stats'])
    y2, s2 = flax.apply(v, x + b, mutable=['batch_stats'])
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-5), s1, s2)
  g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  scale, beta = jnp.asarray(rng.uniform(0.5, 2, 8), jnp.float32), jnp.asarray(rng.normal(size=8), jnp.float32)
  shifted = jax.grad(lambda x, b, s, c: (jnp.tanh(norm._train_shifted(x, b, s, c, 1e-5)[0]) * g).sum(),
                     argnums=(0, 1, 2, 3))(x, b, scale, beta)
  auto = jax.grad(lambda x, s, c: (jnp.tanh(norm._train_autodiff(x, s, c, 1e-5)[0]) * g).sum(),
                  argnums=(0, 1, 2))(x + b, scale, beta)
  assert not np.asarray(shifted[1]).any()
  for a, c in zip((shifted[0], *shifted[2:]), auto):
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5 * float(jnp.abs(c).max()))


def test_one_pass_statistics_against_float64():
  """The shifted path's Σx, Σx² variance against numpy's float64 two-pass one, for channels
  whose mean is 0 to 10 standard deviations (a conv's output has its bias removed): the
  relative error grows as ~1e-7·(mean / std)² (measured: 8e-6 at 10, 9e-5 at 30, 2e-3
  at 100 standard deviations), below 5e-5 here."""
  rng = np.random.default_rng(5)
  x = rng.normal(size=(32, 31, 31, 4)) * np.array([1.0, 0.1, 2.0, 0.5]) + np.array([0, 0.3, 10, 5])
  mean, var = norm._one_pass_stats(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(mean, x.mean((0, 1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(var, x.var((0, 1, 2)), rtol=5e-5)
