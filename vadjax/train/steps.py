"""TrainState and the jitted, data-parallel step functions.

Steps are pure functions of (state, batch). The batch is sharded over the mesh's `data`
axis and the state replicated, so `jit` inserts the gradient all-reduce and BatchNorm sees
the global batch (shared/PERFORMANCE.md, facts from elsewhere). The state is donated.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from vadjax import parallel


class TrainState(train_state.TrainState):
  batch_stats: Any
  rng: jax.Array


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam with PyTorch-style (coupled L2) weight decay and an injectable learning rate,
  so ReduceLROnPlateau can lower it between epochs without recompiling."""
  def build(learning_rate, weight_decay):
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_adam(),
                       optax.scale_by_learning_rate(learning_rate))
  return optax.inject_hyperparams(build)(learning_rate=config.learning_rate,
                                         weight_decay=config.weight_decay)


def set_learning_rate(state: TrainState, lr: float) -> TrainState:
  hp = dict(state.opt_state.hyperparams)
  old = hp['learning_rate']
  # same dtype and sharding as before, or the next train step would recompile
  hp['learning_rate'] = jax.device_put(jnp.asarray(lr, old.dtype), old.sharding)
  return state.replace(opt_state=state.opt_state._replace(hyperparams=hp))


def get_learning_rate(state: TrainState) -> float:
  return float(state.opt_state.hyperparams['learning_rate'])


@dataclasses.dataclass
class Steps:
  """The jitted functions of one (model, method, mesh); built once, reused across runs."""
  model: nn.Module
  init: Callable
  train: Callable
  loss: Callable
  score: Callable


def build_steps(model: nn.Module, method, tx, mesh, image_shape) -> Steps:
  repl = parallel.replicated(mesh)
  data = parallel.data_sharding(mesh)

  def variables(state):
    return {'params': state.params, 'batch_stats': state.batch_stats}

  def init(rng):
    params_rng, state_rng = jax.random.split(rng)
    v = model.init(params_rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    return TrainState.create(apply_fn=model.apply, params=v['params'], tx=tx,
                             batch_stats=v.get('batch_stats', {}), rng=state_rng)

  def train_step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_of(params):
      out, updates = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                 batch['image'], train=True, mutable=['batch_stats'],
                                 rngs={'dropout': rng})
      loss, aux = method.loss_fn(out, batch)
      return loss, (aux, updates)

    (loss, (aux, updates)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads,
                                  batch_stats=updates.get('batch_stats', state.batch_stats))
    return state, {'loss': loss, **aux}

  def loss_step(state, batch):
    out = model.apply(variables(state), batch['image'], train=False)
    return method.loss_fn(out, batch)[0]

  def score_step(state, batch):
    out = model.apply(variables(state), batch['image'], train=False)
    return {**method.score_fn(out, batch), 'recon': out['recon']}

  return Steps(
      model=model,
      init=jax.jit(init, out_shardings=repl),
      train=jax.jit(train_step, in_shardings=(repl, data), out_shardings=(repl, repl),
                    donate_argnums=0),
      loss=jax.jit(loss_step, in_shardings=(repl, data), out_shardings=repl),
      score=jax.jit(score_step, in_shardings=(repl, data), out_shardings=repl))
