"""Model-agnostic meta-learning of a frame predictor over scenes (seed 000 §2.2, eqs.
2.2–2.3; Lu et al., ECCV 2020).

Everything is a pure function of an `apply(params, x) -> prediction`:
  inner update  θ'_i = θ − α ∇θ L(θ; D_i^tr), repeated `steps` times (eq. 2.2), with L the
                mean squared prediction error over the task's K pairs (the seed's sum over
                pairs is K times it: α here is per mean, not per sum);
  outer update  θ ← θ − β ∇θ Σ_i L(θ'_i; D_i^val) (eq. 2.3), tasks vmapped (or unrolled
                on CPU, `task_map`), Adam for β.
`first_order` stops the gradient through the inner gradients (FOMAML): the meta-gradient is
then the gradient of the validation loss at θ'_i. `learn_inner_lr` makes α a learned
per-parameter pytree (Meta-SGD). In JAX the second-order meta-gradient is `jax.grad` of a
function that calls `jax.grad`.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from vadjax import parallel
from vadjax.registry import UserError


def mse(apply, params, batch) -> jax.Array:
  """Mean squared error of the predicted next frames over a batch of pairs."""
  return jnp.mean(jnp.square(apply(params, batch['x']) - batch['y']))


def frame_errors(apply, params, x, y) -> jax.Array:
  """Per-pair prediction error (N,), the anomaly score of the predicted frame."""
  err = jnp.square(apply(params, x) - y)
  return jnp.mean(err, axis=tuple(range(1, err.ndim)))


def adapt(apply, params, batch, alpha, steps: int, first_order: bool = False):
  """θ' after `steps` SGD steps on `batch` (eq. 2.2); `alpha` a number or a pytree like
  params (Meta-SGD)."""
  rates = alpha if isinstance(alpha, dict) else jax.tree.map(lambda _: alpha, params)
  for _ in range(steps):
    grads = jax.grad(functools.partial(mse, apply))(params, batch)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    params = jax.tree.map(lambda p, g, a: p - a * g, params, grads, rates)
  return params


TASK_MAPS = ('auto', 'vmap', 'loop')


def mapping(task_map: str) -> str:
  """'vmap' or 'loop': what `task_map` means on this backend ('auto': loop on CPU only)."""
  if task_map not in TASK_MAPS:
    raise UserError(f'maml.task_map must be one of {TASK_MAPS}, got {task_map!r}')
  if task_map == 'auto':
    return 'loop' if parallel.backend() == 'cpu' else 'vmap'
  return task_map


def conv_impl(order: str) -> str:
  """The U-Net's convolution form for a meta-training order. Second order on CPU: 'gemm'.
  Differentiating XLA's kernel-gradient convolution gives convolutions whose window is the
  whole map (32×32, padding 31: ~90 of the step's 630 ms, `experiments.maml
  --mode=profile`); through one matmul on the patch matrix every derivative is a matmul.
  Paired steps against the twin, 2026-12-03, 2-core Xeon: second order 0.41 → 0.57; first
  order it would cost 1.05 → 0.58, so it keeps XLA's convolutions, as GPU and TPU do."""
  return 'gemm' if order == 'second' and parallel.backend() == 'cpu' else 'auto'


def meta_loss(apply, meta: dict, tasks: dict, alpha: float, steps: int,
              first_order: bool, task_map: str = 'auto') -> jax.Array:
  """The mean over tasks of the adapted models' validation loss (eq. 2.3); `meta` holds
  'params' and, for Meta-SGD, 'alpha'. `task_map`: 'vmap' maps the tasks with jax.vmap;
  'loop' unrolls them. A vmapped conv with per-task weights becomes a grouped conv, which
  XLA:CPU runs ~9× slower than the unrolled convs (BUILD_NOTES.md); 'auto' loops on CPU
  and vmaps elsewhere."""
  rate = meta.get('alpha', alpha)

  def one(task):
    adapted = adapt(apply, meta['params'], task['train'], rate, steps, first_order)
    return mse(apply, adapted, task['val'])
  if mapping(task_map) == 'vmap':
    return jnp.mean(jax.vmap(one)(tasks))
  n = jax.tree.leaves(tasks)[0].shape[0]
  return jnp.mean(jnp.stack([one(jax.tree.map(lambda a: a[i], tasks)) for i in range(n)]))


def init_meta(params, alpha: float, learn_inner_lr: bool) -> dict:
  if alpha <= 0:
    raise UserError(f'maml.inner_lr must be positive, got {alpha}')
  meta = {'params': params}
  if learn_inner_lr:
    meta['alpha'] = jax.tree.map(lambda p: jnp.full_like(p, alpha), params)
  return meta


def make_meta_step(apply, tx: optax.GradientTransformation, alpha: float, steps: int,
                   first_order: bool, task_map: str = 'auto'):
  """The jitted outer update: (meta, opt_state, tasks) → (meta, opt_state, loss)."""
  def step(meta, opt_state, tasks):
    loss, grads = jax.value_and_grad(
        lambda m: meta_loss(apply, m, tasks, alpha, steps, first_order, task_map))(meta)
    updates, opt_state = tx.update(grads, opt_state, meta)
    return optax.apply_updates(meta, updates), opt_state, loss
  return jax.jit(step)


def make_train_step(apply, tx: optax.GradientTransformation):
  """The jitted plain step (joint pretraining, fine-tuning and training from scratch)."""
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(functools.partial(mse, apply))(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return jax.jit(step)
