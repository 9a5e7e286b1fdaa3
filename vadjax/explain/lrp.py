"""ε-LRP (seed 001 §3.8.1, eq. 3.18) of any function built from affine layers, elementwise
activations and pooling, by reinterpreting its jaxpr.

For a layer z_k = Σ_j a_j w_jk + b_k followed by an activation a_k = f(z_k), eq. 3.18
redistributes R_j = a_j Σ_k w_jk R_k / (z_k + ε·sign z_k), the relevance passing through f
unchanged. Written as R = a ⊙ g, this is a backward pass in which every linear operation keeps
its exact transpose and every activation's derivative f'(z) becomes f(z) / (z + ε·sign z)
(Ancona et al., ICLR 2018). So we trace the model, re-evaluate its jaxpr with each activation
replaced by one with that backward rule, and take one vjp:

- conv, transposed conv, dense, sums, pads, slices, reshapes: linear, their own transpose;
  a CPU form of a layer (space-to-depth, sub-pixel, custom-vjp convs) is inlined to its
  plain operations, so the relevance is that of the plain layer whatever form trains;
- BatchNorm at inference is an affine map after its layer, so it folds into that layer's z;
- max pooling routes relevance to the winner, average pooling shares it (their transposes);
- anything else on the path from input to output (softmax, memory addressing, products of
  two activations, recurrences) has no ε rule: `LRPUnsupported` names it.
"""

import jax
import jax.numpy as jnp
from jax.extend import core

from vadjax.registry import UserError

# jitted library activations (by the name jit gives them) and activation primitives
ACTIVATIONS = frozenset({'relu', 'relu6', 'leaky_relu', 'sigmoid', 'silu', 'swish', 'gelu',
                         'elu', 'celu', 'selu', 'softplus', 'hard_tanh', 'log_sigmoid'})
ACTIVATION_PRIMITIVES = frozenset({'tanh', 'logistic'})
# linear in their data operands (the others constant): their transpose is the LRP rule
LINEAR = frozenset({
    'add', 'sub', 'neg', 'reshape', 'broadcast_in_dim', 'transpose', 'squeeze',
    'expand_dims', 'slice', 'concatenate', 'reduce_sum', 'convert_element_type', 'copy',
    'copy_p', 'rev', 'dynamic_slice', 'dynamic_update_slice', 'gather', 'scatter-add',
    'scatter_add', 'reduce_precision', 'cumsum', 'pad', 'select_n', 'stop_gradient',
    'reduce_max', 'reduce_window_max', 'reduce_window_sum', 'reduce_window', 'max', 'min',
    'add_any', 'mul', 'div', 'dot_general', 'conv_general_dilated', 'optimization_barrier'})
# of these, the ones linear only while one operand is constant (data × weights)
ONE_DATA_OPERAND = frozenset({'mul', 'dot_general', 'conv_general_dilated'})
CALLS = frozenset({'jit', 'pjit', 'closed_call', 'core_call', 'custom_jvp_call',
                   'custom_vjp_call', 'custom_vjp_call_jaxpr', 'checkpoint', 'remat'})


class LRPUnsupported(UserError):
  """The model has an operation without an ε-LRP rule on its input → output path."""


def stabilise(z, eps: float):
  """z + ε·sign(z), sign(0) = +1: the stabilised denominator of eq. 3.18."""
  return z + eps * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def _activation(fn, eps: float):
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


def _inner(eqn):
  """The closed jaxpr a call-like equation runs, or None."""
  for key in ('jaxpr', 'call_jaxpr', 'fun_jaxpr'):
    j = eqn.params.get(key)
    if isinstance(j, core.ClosedJaxpr):
      return j
    if isinstance(j, core.Jaxpr):
      return core.ClosedJaxpr(j, ())
  return None


def _bind(eqn, values):
  out = eqn.primitive.bind(*values, **eqn.params)
  return out if eqn.primitive.multiple_results else [out]


def _is_activation(eqn, data) -> bool:
  name = eqn.primitive.name
  if sum(data) != 1 or len(eqn.outvars) != 1:
    return False
  if name in ('jit', 'pjit'):
    return eqn.params.get('name') in ACTIVATIONS
  if name in ACTIVATION_PRIMITIVES:
    return True
  return name in ('max', 'min') and len(eqn.invars) == 2     # ReLU: max(z, const)


def _is_linear(eqn, data) -> bool:
  name = eqn.primitive.name
  if name not in LINEAR:
    return False
  if name in ONE_DATA_OPERAND:
    return sum(data) == 1
  if name == 'div':
    return not data[1]
  if name == 'select_n':
    return not data[0]                         # a data-dependent choice is an activation
  if name in ('gather', 'dynamic_slice'):                  # data indexed by constants
    return not any(data[1:])
  if name == 'dynamic_update_slice':
    return not any(data[2:])
  if name in ('scatter-add', 'scatter_add'):
    return not data[1]
  return True


def _eval(jaxpr: core.ClosedJaxpr, args, data, eps: float):
  """Evaluates `jaxpr` with LRP activations; returns (outputs, is-data, unsupported ops)."""
  env, is_data, bad = {}, {}, {}

  def read(v):
    return v.val if isinstance(v, core.Literal) else env[v]

  def flags(v):
    return (False, frozenset()) if isinstance(v, core.Literal) else (is_data[v], bad[v])

  for v, c in zip(jaxpr.jaxpr.constvars, jaxpr.consts):
    env[v], is_data[v], bad[v] = c, False, frozenset()
  for v, a, d in zip(jaxpr.jaxpr.invars, args, data):
    env[v], is_data[v], bad[v] = a, d, frozenset()
  for eqn in jaxpr.jaxpr.eqns:
    values = [read(v) for v in eqn.invars]
    fl = [flags(v) for v in eqn.invars]
    d = [f[0] for f in fl]
    unsupported = frozenset().union(*(f[1] for f in fl))
    inner = _inner(eqn)
    if not any(d):
      outs, out_data = _bind(eqn, values), [False] * len(eqn.outvars)
    elif _is_activation(eqn, d):
      i = d.index(True)
      with_z = lambda z, i=i, values=values: values[:i] + [z] + values[i + 1:]
      if inner is not None:
        fn = lambda z, inner=inner, with_z=with_z: core.jaxpr_as_fun(inner)(*with_z(z))[0]
      else:
        fn = lambda z, eqn=eqn, with_z=with_z: _bind(eqn, with_z(z))[0]
      outs, out_data = [_activation(fn, eps)(values[i])], [True]
    elif inner is not None and eqn.primitive.name in CALLS:
      outs, out_data, inner_bad = _eval(inner, values, d, eps)
      unsupported |= inner_bad
    else:
      if not _is_linear(eqn, d):
        unsupported |= {eqn.primitive.name}
      outs, out_data = _bind(eqn, values), [True] * len(eqn.outvars)
    for v, o, od in zip(eqn.outvars, outs, out_data):
      if not isinstance(v, core.DropVar):
        env[v], is_data[v], bad[v] = o, od, unsupported
  results = [read(v) for v in jaxpr.jaxpr.outvars]
  result_flags = [flags(v) for v in jaxpr.jaxpr.outvars]
  return (results, [f[0] for f in result_flags],
          frozenset().union(*(f[1] for f in result_flags)))


def check(fn, x) -> None:
  """Raises `LRPUnsupported` if `fn`'s path from `x` to its output has an operation
  without an ε rule."""
  jaxpr = jax.make_jaxpr(fn)(x)
  _, _, bad = _eval(jaxpr, [x], [True], 1e-6)
  if bad:
    raise LRPUnsupported(f'ε-LRP has no rule for {", ".join(sorted(bad))} in this model; it '
                         'covers conv, transposed conv, dense, BN, activation and pooling '
                         'layers (use gradient×input or a perturbation explainer)')


def lrp(fn, x, relevance, eps: float = 1e-6):
  """Input relevance (same shape as `x`) of `fn`'s output relevance `relevance` (same shape
  as `fn(x)`) by the ε rule, eq. 3.18. Call `check(fn, x)` first for a clear error on a
  model the rule does not cover (this function is jit-compatible and does not check)."""
  jaxpr = jax.make_jaxpr(fn)(x)
  modified = lambda x: _eval(jaxpr, [x], [True], eps)[0][0]
  y, pullback = jax.vjp(modified, x)
  (g,) = pullback(relevance / stabilise(y, eps))
  return x * g
