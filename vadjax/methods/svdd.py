"""SVDD encoder fine-tuning, a second training stage for any trained AE (seed 001,
001_22531b3c5af6eb6c.txt §3.6, eq. 3.14, §4.8; Ruff et al.'s soft-boundary Deep SVDD).

The encoder f_e (every parameter the model's `latent` depends on) is fine-tuned on the
normal training data with the soft-boundary objective
    R² + (1/ν)·mean_i max(0, ‖f_e(x_i) − c‖² − R²) + λ‖θ_e‖²,
c = the mean training embedding before fine-tuning (never zeros: §4.8.2), ν = 0.01, λ = 1e-6,
Adam at a very low lr (5e-7) for ~10 epochs. R follows Ruff's code: 0 during the first
`warmup_epochs` (10 there), so a ~10-epoch fine-tuning pulls every embedding towards c with
weight 1/ν; afterwards the (1 − ν) quantile of the last epoch's distances.
Settings: the config group `svdd` (`svdd.epochs` > 0 turns the stage on).
BatchNorm layers run in inference mode, so their running statistics stay those of the AE.
The decoder does not move (its gradient is exactly zero and it is masked out of the decay);
scoring stays the reconstruction error of the fine-tuned encoder + original decoder.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vadjax import parallel
from vadjax.data import eval_batches, train_dataset
from vadjax.data.pipeline import train_iterator
from vadjax.methods.base import Stage


def encoder_mask(model, variables, images):
  """True for every parameter the latent depends on (a nonzero gradient of Σ latent²)."""
  def total(params):
    out = model.apply({**variables, 'params': params}, images, train=False)
    return jnp.sum(jnp.square(out['latent']))
  nonzero = jax.jit(lambda p: jax.tree.map(lambda g: jnp.any(g != 0), jax.grad(total)(p)))
  return jax.tree.map(bool, jax.device_get(nonzero(variables['params'])))


def embeddings(model, variables, source, batch_size: int, mesh) -> np.ndarray:
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False)['latent'])
  variables = jax.device_put(variables, parallel.replicated(mesh))
  out = []
  for batch, n in eval_batches(source, batch_size):
    out.append(np.asarray(apply(variables, parallel.shard_batch(batch, mesh)['image']))[:n])
  return np.concatenate(out)


def _radius(dist: np.ndarray, nu: float) -> float:
  """The (1 − ν) quantile of the distances ‖z − c‖."""
  return float(np.quantile(np.sqrt(dist), 1 - nu))


def finetune(model, variables, source, *, epochs: int, learning_rate: float = 5e-7,
             nu: float = 0.01, weight_decay: float = 1e-6, warmup_epochs: int = 10,
             batch_size: int = 32, seed: int = 0, mesh=None, on_epoch=None):
  """Fine-tunes `variables` ({'params', 'batch_stats'}) of a trained model; returns
  (new variables, info). `on_epoch(epoch, variables)` is called after every epoch."""
  mesh = mesh or parallel.make_mesh(0)
  variables = jax.device_put(variables, parallel.replicated(mesh))
  first = next(eval_batches(source, batch_size))[0]['image']
  mask = encoder_mask(model, variables, jnp.asarray(first))
  z = embeddings(model, variables, source, batch_size, mesh)
  centre = jnp.asarray(z.mean(axis=0))
  radius = 0.0
  tx = optax.masked(optax.adam(learning_rate), mask)
  frozen = {k: v for k, v in variables.items() if k != 'params'}

  def loss_fn(params, images, r):
    latent = model.apply({**frozen, 'params': params}, images, train=False)['latent']
    dist = jnp.sum(jnp.square(latent - centre), axis=1)
    decay = sum(jnp.sum(jnp.square(p)) for p, m in zip(jax.tree.leaves(params),
                                                        jax.tree.leaves(mask)) if m)
    loss = r ** 2 + jnp.mean(jnp.maximum(dist - r ** 2, 0.0)) / nu + weight_decay * decay
    return loss, dist

  @jax.jit
  def step(params, opt_state, images, r):
    (loss, dist), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, images, r)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, dist

  # on the mesh like `step`'s outputs, so that `step` compiles once, not twice
  params = variables['params']
  opt_state = jax.device_put(jax.jit(tx.init)(params), parallel.replicated(mesh))
  steps_per_epoch = len(source) // batch_size
  data = train_iterator(train_dataset(source, batch_size, seed, max(epochs, 1)), workers=0)
  history = []
  for epoch in range(1, epochs + 1):
    losses, dists = [], []
    for _ in range(steps_per_epoch):
      images = parallel.shard_batch(next(data), mesh)['image']
      params, opt_state, loss, dist = step(params, opt_state, images, jnp.float32(radius))
      losses.append(loss)
      dists.append(dist)
    losses = np.asarray(jax.device_get(jnp.stack(losses)))
    if not np.all(np.isfinite(losses)):
      raise FloatingPointError(f'SVDD fine-tuning diverged at epoch {epoch} (loss '
                               f'{losses[~np.isfinite(losses)][0]}); lower the learning rate')
    if epoch >= warmup_epochs:
      radius = _radius(np.concatenate(jax.device_get(dists)), nu)
    history.append({'epoch': epoch, 'svdd_loss': float(losses.mean()), 'radius': radius})
    if on_epoch is not None:
      on_epoch(epoch, {**frozen, 'params': params})
  info = {'centre_norm': float(jnp.linalg.norm(centre)), 'radius': radius, 'history': history,
          'encoder_params': int(sum(p.size for p, m in zip(jax.tree.leaves(params),
                                                            jax.tree.leaves(mask)) if m))}
  return {**frozen, 'params': params}, info


class SVDD(Stage):
  """SVDD fine-tuning as a post-training stage of the reconstruction methods."""
  name = 'svdd'
  DEFAULTS = dict(epochs=0, learning_rate=5e-7, nu=0.01, weight_decay=1e-6, warmup_epochs=10)

  def __init__(self, **settings):
    self.s = settings

  def run(self, model, variables, train_source, *, batch_size, seed, mesh):
    return finetune(model, variables, train_source, batch_size=batch_size, seed=seed,
                    mesh=mesh, **self.s)
