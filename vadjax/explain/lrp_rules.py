"""The LRP rules at a layer's end (vadjax/explain/lrp.py walks the model and applies them):
ε (eq. 3.18), z⁺ and z^B as activations with a modified backward pass, and the (p, n, b)
parts of a data variable that z⁺ and z^B need (lrp.py's module docstring derives them)."""

import jax
import jax.numpy as jnp


def stabilise(z, eps: float):
  """z + ε·sign(z), sign(0) = +1: the stabilised denominator of eq. 3.18."""
  return z + eps * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def epsilon_activation(fn, eps: float):
  """`fn` with the ε-LRP backward rule g ↦ g · f(z) / (z + ε·sign z)."""
  @jax.custom_vjp
  def act(z):
    return fn(z)

  def fwd(z):
    y = fn(z)
    return y, (z, y)

  def bwd(res, g):
    z, y = res
    return (g * y / stabilise(z, eps),)

  act.defvjp(fwd, bwd)
  return act


def zplus_activation(fn, eps: float):
  """`fn(z)` whose backward sends the relevance R = f(z)·g, over s = p + b⁺, into p alone
  (p: z computed with the layer's sign-split weights, b: its constant part)."""
  @jax.custom_vjp
  def act(z, p, b):
    return fn(z)

  def fwd(z, p, b):
    y = fn(z)
    return y, (y, p, b)

  def bwd(res, g):
    y, p, b = res
    v = g * y / stabilise(p + jnp.maximum(b, 0), eps)
    return jnp.zeros_like(y), v, jnp.zeros_like(b)

  act.defvjp(fwd, bwd)
  return act


def zbox_activation(fn, eps: float):
  """`fn(z)` whose backward is the first layer's z^B rule: s = z − b − p, with p the input's
  bounds through the sign-split weights (l·w⁺ + h·w⁻, from the split's start (l, h)); the
  relevance R = f(z)·g over s goes to z (so x·w gets it) and, negated, to p."""
  @jax.custom_vjp
  def act(z, p, b):
    return fn(z)

  def fwd(z, p, b):
    y = fn(z)
    return y, (y, z - b - p, b)

  def bwd(res, g):
    y, s, b = res
    v = g * y / stabilise(s, eps)
    return v, -v, jnp.zeros_like(b)

  act.defvjp(fwd, bwd)
  return act


class Split:
  """(p, n, b) of a data variable and the kind of layer it is in (None before one); `box`:
  (p, n) started as the input's bounds (l, h) and the first layer has not ended."""

  def __init__(self, p, n, b, kind=None, box=False):
    self.p, self.n, self.b, self.kind, self.box = p, n, b, kind, box

  @classmethod
  def start(cls, a):
    return cls(jnp.maximum(a, 0), jnp.minimum(a, 0), jnp.zeros_like(a))


def layer_end(fn, value, split, eps):
  """`fn(value)` with the rule of the layer `split` is in: z^B for the first layer under
  the box rule, z⁺ for a conv, else ε."""
  if split is not None and split.kind and split.box:
    return zbox_activation(fn, eps)(value, split.p, split.b)
  if split is not None and split.kind == 'conv':
    return zplus_activation(fn, eps)(value, split.p, split.b)
  return epsilon_activation(fn, eps)(value)


def close(value, split, eps):
  """Ends a layer without an activation after it (identity): its rule at that point."""
  return layer_end(lambda z: z, value, split, eps) if split.kind else value
