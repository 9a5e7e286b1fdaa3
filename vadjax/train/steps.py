"""TrainState and the jitted, data-parallel step functions.

Steps are pure functions of (state, batch). The batch is sharded over the mesh's `data`
axis and the state replicated, so `jit` inserts the gradient all-reduce and BatchNorm sees
the global batch (shared/PERFORMANCE.md, facts from elsewhere). The state is donated.
"""

import dataclasses
from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from vadjax import parallel


class TrainState(train_state.TrainState):
  batch_stats: Any
  rng: jax.Array
  epoch: jax.Array      # completed epochs, int32: optimizers may schedule on it (ALPS)


def cyclic_learning_rate(base: float, peak: float, half_cycle: int) -> optax.Schedule:
  """Smith's triangular cyclic learning rate: base → peak → base every 2·half_cycle steps
  (seed 002 §4.4 trains ADACL with Adam and a cyclic learning rate)."""
  def schedule(count):
    phase = jnp.abs(jnp.mod(count / half_cycle, 2.0) - 1.0)     # 1 at cycle start, 0 at peak
    return peak - (peak - base) * phase
  return schedule


def make_optimizer(settings) -> optax.GradientTransformation:
  """Adam with PyTorch-style (coupled L2) weight decay and an injectable learning rate,
  so ReduceLROnPlateau can lower it between epochs without recompiling. `settings` is the
  config's `optimizer` group; with `lr_schedule='cyclic'` the learning rate follows
  `cyclic_learning_rate` instead."""
  def build(learning_rate, weight_decay):
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_adam(),
                       optax.scale_by_learning_rate(learning_rate))
  lr = settings.learning_rate
  if settings.get('lr_schedule', 'constant') == 'cyclic':
    lr = cyclic_learning_rate(settings.learning_rate, settings.max_learning_rate,
                              settings.lr_cycle_steps)
  return optax.inject_hyperparams(build)(learning_rate=lr, weight_decay=settings.weight_decay)


def _is_hp(x):
  return isinstance(x, (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState))


def set_learning_rate(state: TrainState, lr: float) -> TrainState:
  """Sets the learning rate of every Adam in the optimizer (one per player for ALPS)."""
  def set_lr(s):
    if not _is_hp(s):
      return s
    new = _like(s.hyperparams['learning_rate'], lr)
    return s._replace(hyperparams={**s.hyperparams, 'learning_rate': new})
  return state.replace(opt_state=jax.tree.map(set_lr, state.opt_state, is_leaf=_is_hp))


def get_learning_rate(state: TrainState) -> float:
  first = next(s for s in jax.tree.leaves(state.opt_state, is_leaf=_is_hp) if _is_hp(s))
  return float(first.hyperparams['learning_rate'])


def set_epoch(state: TrainState, epoch: int) -> TrainState:
  return state.replace(epoch=_like(state.epoch, epoch))


def _like(old: jax.Array, value) -> jax.Array:
  """`value` as a replicated scalar with old's dtype and sharding (else the next train step
  would recompile); built per device, as the mesh may span processes."""
  host = np.asarray(value, old.dtype)
  return jax.make_array_from_callback(old.shape, old.sharding, lambda _: host)


def _with_recon(scores: dict, out: dict) -> dict:
  return {**scores, 'recon': out['recon']} if 'recon' in out else scores


@dataclasses.dataclass
class Steps:
  """The jitted functions of one (model, method, mesh); built once, reused across runs."""
  model: nn.Module
  init: Callable
  train: Callable
  loss: Callable
  score: Callable


def _variables(state):
  return {'params': state.params, 'batch_stats': state.batch_stats}


@dataclasses.dataclass(frozen=True, eq=False)     # hashed by identity, as jit wants
class _StepFns:
  """The pure step functions of one (model, method, optimizer, input shape)."""
  model: nn.Module
  method: object
  tx: optax.GradientTransformation
  image_shape: tuple

  def init(self, rng):
    params_rng, state_rng = jax.random.split(rng)
    v = self.model.init(params_rng, jnp.zeros((1, *self.image_shape), jnp.float32),
                        train=False)
    state = TrainState.create(apply_fn=self.model.apply, params=v['params'], tx=self.tx,
                              batch_stats=v.get('batch_stats', {}), rng=state_rng,
                              epoch=jnp.zeros((), jnp.int32))
    # create's step is a weakly typed 0 and a restored one is not: every step function
    # would compile twice in a run that resumes or scores a restored state
    return state.replace(step=jnp.zeros((), jnp.int32))

  def train(self, state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    batch = self.method.augment(batch, jax.random.fold_in(rng, 1))   # ADACL: anomalies

    def loss_of(params):
      out, updates = self.model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
          mutable=['batch_stats'], rngs={'dropout': rng, 'perturb': jax.random.fold_in(rng, 2)})
      loss, aux = self.method.loss_fn(out, batch)
      chex.assert_rank(loss, 0)           # the protocol (methods/base.py), checked at trace
      return loss, (aux, updates)

    (loss, (aux, updates)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    grads = self.method.adjust_grads(grads)          # ALPS: the distorter ascends
    deltas, opt_state = state.tx.update(grads, state.opt_state, state.params,
                                        epoch=state.epoch)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, deltas),
                          opt_state=opt_state,
                          batch_stats=updates.get('batch_stats', state.batch_stats))
    return state, {'loss': loss, **aux}

  def loss(self, state, batch):
    """The method's loss on a batch; patch stacks (B, P, h, w, C) count every patch, each
    with its frame's weight."""
    x = batch['image']
    if x.ndim == len(self.image_shape) + 2:
      p = x.shape[1]
      batch = {'image': x.reshape(-1, *x.shape[2:]),
               **({'weight': jnp.repeat(batch['weight'], p)} if 'weight' in batch else {})}
    out = self.model.apply(_variables(state), batch['image'], train=False)
    return self.method.loss_fn(out, batch)[0]

  def score(self, state, batch):
    return self.score_with(_variables(state), batch)

  def score_with(self, variables, batch):
    """The method's scores of a batch under `variables` (params, batch_stats)."""
    x = batch['image']
    if x.ndim == len(self.image_shape) + 2:     # patch stacks: a frame's score is its max
      return self._score_patches(variables, batch)
    out = self.model.apply(variables, x, train=False)
    scores = self.method.score_fn(out, batch)
    chex.assert_shape(scores['score'], (x.shape[0],))     # one score per sample
    return _with_recon(scores, out)

  def _score_patches(self, variables, batch):
    """(B, P, h, w, C) patch stacks (METHODS.md §0, patch protocol): every patch scored,
    the frame's score the max; the maps and reconstruction are the top patch's."""
    x = batch['image']
    b, p = x.shape[:2]
    flat = {'image': x.reshape(b * p, *x.shape[2:])}
    out = self.model.apply(variables, flat['image'], train=False)
    res = _with_recon(self.method.score_fn(out, flat), out)
    top = jnp.argmax(res['score'].reshape(b, p), axis=1)
    pick = lambda v: v.reshape(b, p, *v.shape[1:])[jnp.arange(b), top]
    reduced = {k: (jnp.max(v.reshape(b, p), axis=1) if k == 'score' or k.startswith('score/')
                   else pick(v)) for k, v in res.items()}
    return {**reduced, 'patch': top}


def scorer(model: nn.Module, method, image_shape) -> Callable:
  """The pure score function `(variables, batch) -> scores` of a model and method, as the
  score step computes it (export builds it with the plain convolution forms)."""
  return _StepFns(model, method, None, tuple(image_shape)).score_with


def build_steps(model: nn.Module, method, tx, mesh, image_shape) -> Steps:
  """The step functions jitted with the batch sharded over the mesh and the state
  replicated (the train step donates it)."""
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  fns = _StepFns(model, method, tx, tuple(image_shape))
  return Steps(
      model=model,
      init=jax.jit(fns.init, out_shardings=repl),
      train=jax.jit(fns.train, in_shardings=(repl, data), out_shardings=(repl, repl),
                    donate_argnums=0),
      loss=jax.jit(fns.loss, in_shardings=(repl, data), out_shardings=repl),
      score=jax.jit(fns.score, in_shardings=(repl, data), out_shardings=repl))
