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

`rule='epsilon_plus'` is zennit's EpsilonPlus composite: z⁺ on convolutions, ε on dense
layers (Montavon et al. 2019, "Layer-wise relevance propagation: an overview", §10.2).
For a layer z_k = Σ_j a_j w_jk + b_k, z⁺ (α1β0 with signed inputs) redistributes
    R_j = a⁺_j Σ_k w⁺_jk R_k / s_k + a⁻_j Σ_k w⁻_jk R_k / s_k,  s_k = Σ_j a⁺_j w⁺_jk + a⁻_j w⁻_jk + b⁺_k.
The weights are the layer's effective ones, BatchNorm merged. We get them without merging:
beside its value, every data variable carries (p, n, b), its value computed with the
layer's positive and negative weight parts and its constant part. Starting from (a⁺, a⁻, 0)
at the layer's input, a constant factor c maps (p, n) to (c⁺p + c⁻n, c⁺n + c⁻p) (the sign
rule of products: BatchNorm's negative scales flip w), any other linear step maps each part
by its own linearisation, so at the layer's output p = s − b⁺. The activation's backward
sends R / s into p; autodiff through a⁺ and a⁻ gives exactly the rule. A layer ends at an
activation, at the next layer (a dense layer straight into a transposed conv) or at the
output, as zennit's layers do.

`rule='epsilon_plus_box'` takes zennit's ZBox (z^B, Montavon et al. 2017 §5) for the first
layer, for inputs within [l, h]: R_i = Σ_k (x_i w_ik − l_i w⁺_ik − h_i w⁻_ik) R_k / s_k, s_k the
sum over i (the bias cancels, so it conserves). z⁺ gives a pixel the share a_i w⁺, nothing to
dark pixels (docs/explanations.md); z^B also credits how far each is from the bounds. The
parts start as (l, h, 0), so p = l·w⁺ + h·w⁻, BatchNorm merged, and s = z − b − p.
"""

import jax
import jax.numpy as jnp
from jax.extend import core

from vadjax.explain.lrp_rules import Split, close, layer_end, stabilise
from vadjax.nn.conv_forms import GEMM
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
# multiply their data operand by a constant: the sign rule applies
WEIGHTED = frozenset({'mul', 'div', 'dot_general', 'conv_general_dilated', 'neg', 'sub'})
RULES = ('epsilon', 'epsilon_plus', 'epsilon_plus_box')
CALLS = frozenset({'jit', 'pjit', 'closed_call', 'core_call', 'custom_jvp_call',
                   'custom_vjp_call', 'custom_vjp_call_jaxpr', 'checkpoint', 'remat'})


class LRPUnsupported(UserError):
  """The model has an operation without an ε-LRP rule on its input → output path."""


def _kind(eqn, d) -> str | None:
  """'conv' or 'dense' for a layer's weight operation (one data operand), else None."""
  name = eqn.primitive.name
  if name == 'conv_general_dilated' or (name == 'dot_general' and GEMM in str(
      eqn.source_info.name_stack)):
    return 'conv'
  return 'dense' if name == 'dot_general' and sum(d) == 1 else None


def _with_data(values, d, data):
  it = iter(data)
  return [next(it) if dk else v for v, dk in zip(values, d)]


def _split_step(eqn, values, d, splits):
  """The (p, n, b) of a linear equation's single output from its data operands'."""
  name, i = eqn.primitive.name, d.index(True)
  if name in WEIGHTED and sum(d) == 1 and name not in ('sub', 'neg'):
    c = values[1 - i] if name != 'div' else 1 / values[1]
    op = (lambda u, c: u * c) if name == 'div' else (
        lambda u, c: _bind(eqn, [u, c] if i == 0 else [c, u])[0])
    sp = splits[i]
    cp, cn = jnp.maximum(c, 0), jnp.minimum(c, 0)
    return Split(op(sp.p, cp) + op(sp.n, cn), op(sp.n, cp) + op(sp.p, cn), op(sp.b, c),
                  _kind(eqn, d) or sp.kind)
  if name in ('sub', 'neg'):                   # u1 − u2 = u1 + (−1)·u2: p and n swap
    parts = [splits[k] if d[k] else Split(0., 0., values[k]) for k in range(len(values))]
    if name == 'neg':
      (a,) = parts
      return Split(-a.n, -a.p, -a.b, a.kind)
    a, b = parts
    return Split(a.p - b.n, a.n - b.p, a.b - b.b, a.kind or b.kind)
  f = lambda *u: _bind(eqn, _with_data(values, d, u))[0]
  out, lin = jax.linearize(f, *[v for v, dk in zip(values, d) if dk])
  data = [sp for sp, dk in zip(splits, d) if dk]
  kinds = [sp.kind for sp in data if sp.kind]
  at = [v for v, dk in zip(values, d) if dk]
  return Split(lin(*[sp.p for sp in data]), lin(*[sp.n for sp in data]),
                lin(*[sp.b for sp in data]) + out - lin(*at),
                'conv' if 'conv' in kinds else (kinds[0] if kinds else None))


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


def _eval(jaxpr: core.ClosedJaxpr, args, data, eps: float, splits=None):
  """Evaluates `jaxpr` with LRP activations; returns (outputs, is-data, unsupported ops, the
  outputs' splits). `splits` (one per argument, None for constants): the z⁺ rule's parts
  (module docstring); None: the ε rule everywhere."""
  env, is_data, bad, split = {}, {}, {}, {}
  plus = splits is not None

  def read(v):
    return v.val if isinstance(v, core.Literal) else env[v]

  def flags(v):
    return (False, frozenset()) if isinstance(v, core.Literal) else (is_data[v], bad[v])

  for v, c in zip(jaxpr.jaxpr.constvars, jaxpr.consts):
    env[v], is_data[v], bad[v] = c, False, frozenset()
  for v, a, dv, sp in zip(jaxpr.jaxpr.invars, args, data, splits or [None] * len(args)):
    env[v], is_data[v], bad[v], split[v] = a, dv, frozenset(), sp
  for eqn in jaxpr.jaxpr.eqns:
    values = [read(v) for v in eqn.invars]
    fl = [flags(v) for v in eqn.invars]
    d = [f[0] for f in fl]
    # (after an operation without a rule, already reported, the parts start afresh)
    sps = [(split.get(v) or Split.start(x)) if plus and dk else None
           for v, x, dk in zip(eqn.invars, values, d)]
    unsupported = frozenset().union(*(f[1] for f in fl))
    inner = _inner(eqn)
    out_splits = [None] * len(eqn.outvars)
    if not any(d):
      outs, out_data = _bind(eqn, values), [False] * len(eqn.outvars)
    elif _is_activation(eqn, d):
      i = d.index(True)
      with_z = lambda z, i=i, values=values: values[:i] + [z] + values[i + 1:]
      if inner is not None:
        fn = lambda z, inner=inner, with_z=with_z: core.jaxpr_as_fun(inner)(*with_z(z))[0]
      else:
        fn = lambda z, eqn=eqn, with_z=with_z: _bind(eqn, with_z(z))[0]
      outs, out_data = [layer_end(fn, values[i], sps[i], eps)], [True]
      y = outs[0]
      out_splits = [Split.start(y)] if plus else out_splits
    elif inner is not None and eqn.primitive.name in CALLS:
      outs, out_data, inner_bad, out_splits = _eval(inner, values, d, eps,
                                                    sps if plus else None)
      unsupported |= inner_bad
    else:
      if not _is_linear(eqn, d) or (plus and len(eqn.outvars) != 1):
        unsupported |= {eqn.primitive.name}
      elif plus:
        if _kind(eqn, d) and sps[d.index(True)].kind:     # a layer straight after a layer
          i = d.index(True)
          values[i] = close(values[i], sps[i], eps)
          sps[i] = Split.start(values[i])
        out_splits = [_split_step(eqn, values, d, sps)]
        out_splits[0].box = any(sp.box for sp in sps if sp is not None)
      outs, out_data = _bind(eqn, values), [True] * len(eqn.outvars)
    for v, o, od, sp in zip(eqn.outvars, outs, out_data, out_splits):
      if not isinstance(v, core.DropVar):
        env[v], is_data[v], bad[v], split[v] = o, od, unsupported, sp
  outvars = jaxpr.jaxpr.outvars
  result_flags = [flags(v) for v in outvars]
  return ([read(v) for v in outvars], [f[0] for f in result_flags],
          frozenset().union(*(f[1] for f in result_flags)),
          [None if isinstance(v, core.Literal) else split.get(v) for v in outvars])


def check(fn, x, rule: str = 'epsilon') -> None:
  """Raises `LRPUnsupported` if `fn`'s path from `x` to its output has an operation
  without a rule."""
  if rule not in RULES:
    raise UserError(f'LRP rule must be one of {RULES}, got {rule!r}')
  jaxpr, found = jax.make_jaxpr(fn)(x), []

  def walk(x):     # traced abstractly: no operation is compiled or run
    splits = None if rule == 'epsilon' else [Split.start(x)]
    found.append(_eval(jaxpr, [x], [True], 1e-6, splits)[2])
  jax.eval_shape(walk, x)
  bad = found[0]
  if bad:
    raise LRPUnsupported(f'{rule} LRP has no rule for {", ".join(sorted(bad))} in this model; '
                         'it covers conv, transposed conv, dense, BN, activation and pooling '
                         'layers (use gradient×input or a perturbation explainer)')


def lrp(fn, x, relevance, eps: float = 1e-6, rule: str = 'epsilon', bounds=(0., 1.)):
  """Input relevance (same shape as `x`) of `fn`'s output relevance `relevance` (same shape
  as `fn(x)`) by the ε rule, eq. 3.18, by EpsilonPlus (`rule='epsilon_plus'`, ε also its
  z⁺ stabiliser), or by EpsilonPlus with the z^B rule on the first layer
  (`'epsilon_plus_box'`, inputs within `bounds`, vadjax's images: [0, 1]). Call
  `check(fn, x, rule)` first for a clear error on a model the rule does not cover (this
  function is jit-compatible and does not check)."""
  jaxpr = jax.make_jaxpr(fn)(x)
  box = rule == 'epsilon_plus_box'
  lo, hi = (jnp.full_like(x, b) for b in bounds)

  def modified(x, lo, hi):
    if rule == 'epsilon':
      return _eval(jaxpr, [x], [True], eps)[0][0]
    start = Split(lo, hi, jnp.zeros_like(x), box=True) if box else Split.start(x)
    (y,), _, _, (sp,) = _eval(jaxpr, [x], [True], eps, [start])
    return close(y, sp, eps) if sp is not None else y

  y, pullback = jax.vjp(modified, x, lo, hi)
  if rule == 'epsilon':       # the output's ε: eq. 3.18 at the last layer
    g, gl, gh = pullback(relevance / stabilise(y, eps))
  else:                       # the last layer closed its own rule: R = y·g exactly
    nonzero = y != 0
    g, gl, gh = pullback(jnp.where(nonzero, relevance / jnp.where(nonzero, y, 1), 0))
  return x * g + lo * gl + hi * gh       # z^B: x·w·v − l·w⁺·v − h·w⁻·v (zero otherwise)
