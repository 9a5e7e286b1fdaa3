"""The training loop of one run: train with resume from the run's last checkpoint, the
method's post-training stages (SVDD), then calibration of the score normaliser and
thresholds on train/val data. Nothing here evaluates on the test split.

SIGINT (Ctrl-C) and SIGTERM (cluster preemption) end training at the next step boundary
with a checkpoint, so that the same command resumes exactly where it stopped.
"""

import contextlib
import dataclasses
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vadjax import parallel
from vadjax.data import train_dataset
from vadjax.data.pipeline import train_iterator
from vadjax.data.sources import field, normal_part
from vadjax.eval import metrics as metrics_lib
from vadjax.registry import UserError
from vadjax.train import evaluate
from vadjax.train import steps as steps_lib
from vadjax.train.checkpoint import Checkpointer
from vadjax.train.logging import RunLogger


class TrainingDiverged(UserError):
  pass


class Interrupted(UserError):
  """Training stopped by a signal after saving a checkpoint; exit code 128 + signal."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_code = 128 + signum


class Plateau:
  """ReduceLROnPlateau and early stopping on the validation loss (seed 001 §4.4.1)."""

  def __init__(self, config, state: dict | None = None):
    opt = config.optimizer
    self.factor, self.patience, self.min_lr = (opt.plateau_factor, opt.plateau_patience,
                                               opt.min_learning_rate)
    self.stop_patience = config.early_stopping_patience
    self.state = state or {'best': float('inf'), 'since_best': 0, 'since_reduce': 0}

  def update(self, val_loss: float, lr: float) -> tuple[float, bool]:
    s = self.state
    if val_loss < s['best']:
      s.update(best=val_loss, since_best=0, since_reduce=0)
    else:
      s['since_best'] += 1
      s['since_reduce'] += 1
    if s['since_reduce'] >= self.patience:
      lr, s['since_reduce'] = max(lr * self.factor, self.min_lr), 0
    stop = self.stop_patience > 0 and s['since_best'] >= self.stop_patience
    return lr, stop


@contextlib.contextmanager
def stop_signals():
  """Yields a list that receives SIGINT/SIGTERM numbers instead of the default handling
  (in the main thread only; elsewhere signals keep their handlers)."""
  received = []
  if threading.current_thread() is not threading.main_thread():
    yield received
    return
  handler = lambda signum, frame: received.append(signum)
  old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield received
  finally:
    for s, h in old.items():
      signal.signal(s, h)


@dataclasses.dataclass
class _Run:
  """What the loop of one run works with."""
  exp: object
  splits: object
  name: str
  seed: int
  steps: steps_lib.Steps
  ckpt: Checkpointer
  iterator: object
  meta: dict
  steps_per_epoch: int
  total: int


def _start(exp, splits, run_dir, seed, fp) -> tuple[_Run, object]:
  """The run's state: fresh, or restored from its last checkpoint with the data position."""
  cfg = exp.config
  name = f'{cfg.dataset}/{os.path.basename(os.path.dirname(run_dir))}/seed{seed}'
  steps = exp.steps(splits.image_shape)
  state = steps.init(jax.random.PRNGKey(seed))
  ckpt = Checkpointer(os.path.join(run_dir, 'checkpoints'))
  steps_per_epoch = len(splits.train) // cfg.batch_size
  total = cfg.num_train_steps or steps_per_epoch * cfg.num_epochs
  epochs = -(-total // max(steps_per_epoch, 1))       # the data's epochs to cover `total`
  iterator = train_iterator(train_dataset(splits.train, cfg.batch_size, seed, epochs),
                            cfg.data.workers)
  # the run's own input shape: categories of one dataset may differ (walkway gray / color)
  meta = {'fingerprint': fp, 'step': 0, 'epoch': 0, 'history': [], 'finished': False,
          'plateau': None, 'image_shape': list(splits.image_shape)}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state, fp)
    try:
      iterator.set_state(meta['data_iterator'])
    except (KeyError, TypeError, ValueError) as e:
      raise UserError(f'cannot resume the data position in {run_dir} ({e!r}); resume with '
                      f'the data.workers of the interrupted run (0 vs > 0 store different '
                      f'positions)') from None
    logging.info('[%s] resumed from step %d (epoch %d)', name, meta['step'], meta['epoch'])
  return _Run(exp, splits, name, seed, steps, ckpt, iterator, meta, steps_per_epoch,
              total), state


def _check_finite(losses: np.ndarray, first_step: int, run: _Run) -> None:
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    saved = run.ckpt.latest_step()
    where = (f'the last good checkpoint is step {saved}' if saved is not None else
             'no checkpoint was saved yet')
    raise TrainingDiverged(
        f'[{run.name}] the training loss became {losses[bad[0]]} at step '
        f'{first_step + int(bad[0])}; stopped without saving it ({where}). Lower '
        f'optimizer.learning_rate or check the data for NaN values')


def _validate(run: _Run, state, val) -> tuple[dict, float]:
  """The epoch's validation values and the number early stopping watches (lower = better)."""
  cfg, mesh = run.exp.config, run.exp.mesh
  if run.exp.method.validation == 'auroc':
    scores = evaluate.score_split(run.steps, state, val, mesh, cfg.eval_batch_size)['score']
    auroc = metrics_lib.auroc(field(val, 'label'), scores)
    return {'val_auroc': auroc}, -auroc
  loss = evaluate.mean_loss(run.steps, state, val, mesh, cfg.eval_batch_size)
  return {'val_loss': loss}, loss


def _save(run: _Run, state, step: int, epoch: int, plateau: Plateau, **extra) -> None:
  run.meta.update(step=step, epoch=epoch, plateau=plateau.state,
                  data_iterator=run.iterator.get_state(), **extra)
  run.ckpt.save(step, state, run.meta)


def _end_of_epoch(run: _Run, state, step, epoch, plateau, val, values):
  """Validation, learning-rate plateau, early stopping and the periodic checkpoint."""
  cfg = run.exp.config
  state = steps_lib.set_epoch(state, epoch)
  lr = steps_lib.get_learning_rate(state)
  new, watched = _validate(run, state, val)
  values.update(new, learning_rate=lr)
  new_lr, stop = plateau.update(watched, lr)
  if new_lr != lr:
    state = steps_lib.set_learning_rate(state, new_lr)
    logging.info('[%s] validation plateaued: learning rate %.3g -> %.3g', run.name, lr, new_lr)
  run.meta['history'].append({'epoch': epoch, 'step': step, **values})
  # the end of training is saved by the caller, together with the calibration
  if epoch % cfg.checkpoint_every_epochs == 0 and not stop and step < run.total:
    _save(run, state, step, epoch, plateau)
  if stop:
    logging.info('[%s] early stopping at epoch %d (validation did not improve for %d '
                 'epochs)', run.name, epoch, cfg.early_stopping_patience)
  return state, stop


def _fit(run: _Run, state, signals: list):
  """The epochs; returns (state, step, epoch, plateau, stopped early, timings). The time
  spent waiting for the next batch is measured: its share of the stepping time (after the
  first step, without validation and checkpoints) says whether the input pipeline keeps up
  (`data.workers` adds Grain worker processes where it does not)."""
  cfg, method = run.exp.config, run.exp.method
  plateau = Plateau(cfg, run.meta['plateau'])
  val = normal_part(run.splits.val)
  if method.validation == 'auroc':  # ADACL: val normals and created anomalies (§4.4)
    val = method.validation_set(val, run.seed)
  logger = RunLogger(os.path.dirname(run.ckpt.directory), run.name, run.total,
                     run.meta['step'])
  step, epoch = run.meta['step'], run.meta['epoch']
  pending, stop, t_start, compile_s = [], False, time.perf_counter(), None
  wait = aside = 0.0            # waiting for batches; validation and checkpoints
  t_log, wait_log = t_start, 0.0
  try:
    while step < run.total and not stop:
      t_in = time.perf_counter()
      batch = parallel.shard_batch(next(run.iterator), run.exp.mesh)
      if compile_s is not None:  # the first batch starts the workers: set aside with compile
        wait += time.perf_counter() - t_in
      state, metrics = run.steps.train(state, batch)
      pending.append(metrics['loss'])
      step += 1
      compile_s = compile_s or time.perf_counter() - t_start  # the first step's dispatch
      epoch_end = step % run.steps_per_epoch == 0
      if not (epoch_end or step % cfg.log_every_steps == 0 or signals):
        continue
      losses = np.asarray(jax.device_get(jnp.stack(pending)))
      _check_finite(losses, step - len(pending) + 1, run)
      now = time.perf_counter()
      pending, values = [], {'train_loss': float(losses.mean()),
                             'input_wait_share': (wait - wait_log) / max(now - t_log, 1e-9)}
      if epoch_end:
        epoch += 1
        state, stop = _end_of_epoch(run, state, step, epoch, plateau, val, values)
      logger.write(step, {**values, 'epoch': epoch})
      logger.progress(step, epoch, values)
      t_log, wait_log = time.perf_counter(), wait
      aside += t_log - now
      if signals:
        run.ckpt.wait()
        if run.ckpt.latest_step() != step:
          _save(run, state, step, epoch, plateau)
          run.ckpt.wait()
        name = signal.Signals(signals[0]).name
        raise Interrupted(f'[{run.name}] {name} received: saved step {step}; run the same '
                          f'command again to resume', signals[0])
  finally:
    logger.close()
    run.ckpt.wait()
  seconds = time.perf_counter() - t_start
  done = step - logger.start
  stepping = max(seconds - (compile_s or 0.0) - aside, 1e-9)   # the steps after the first
  timings = {'train_s': seconds, 'compile_s': compile_s,
             'steps_per_s': done / max(seconds, 1e-9),
             'clips_per_s': done * cfg.batch_size / max(seconds, 1e-9),
             'input_wait_s': wait, 'input_wait_share': wait / stepping}
  return state, step, epoch, plateau, stop, timings


def train_run(exp, splits, run_dir: str, seed: int, fp: dict) -> dict:
  """Trains one run (resuming if a checkpoint exists), runs the method's stages and
  calibrates its scores; returns the run's checkpoint record."""
  run, state = _start(exp, splits, run_dir, seed, fp)
  try:
    if run.meta['finished']:
      return run.meta
    with stop_signals() as signals:
      state, step, epoch, plateau, stop, timings = _fit(run, state, signals)
      state = _stages(run, state)
      calib = evaluate.calibrate(run.steps, state, splits, exp.mesh, exp.config.eval_batch_size,
                                 exp.config.contamination)
      _save(run, state, step, epoch, plateau, finished=True, stopped_early=stop,
            timings=timings, **calib)
      run.ckpt.wait()
    if signals:      # received during the stages or calibration: honoured once saved
      raise Interrupted(f'[{run.name}] {signal.Signals(signals[0]).name} received: the run '
                        f'finished and is saved; run the same command again to go on',
                        signals[0])
    return run.meta
  finally:
    run.ckpt.close()


def _stages(run: _Run, state):
  """The method's post-training stages (SVDD), each on the previous one's parameters."""
  cfg = run.exp.config
  for stage in run.exp.method.stages():
    variables, run.meta[stage.name] = stage.run(
        run.steps.model, {'params': state.params, 'batch_stats': state.batch_stats},
        run.splits.train, batch_size=cfg.batch_size, seed=run.seed, mesh=run.exp.mesh)
    state = state.replace(params=jax.device_put(variables['params'],
                                                parallel.replicated(run.exp.mesh)))
    logging.info('[%s] stage %s done: %s', run.name, stage.name,
                 {k: v for k, v in run.meta[stage.name].items() if isinstance(v, float)})
  return state
