"""The experiment driver: `train_and_evaluate(config, workdir)`.

For every category of the protocol (normal class, texture ...) and every seed, one run:
train with resume from the run's last checkpoint, calibrate the score normaliser and
thresholds on train/val data, score the test split, write metrics and plots. Then one
`report.json` for the whole experiment with per-category and mean metrics (± 95% CI over
seeds) and a printed results table. Compiled steps are shared by all runs.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vadjax import parallel
from vadjax.data import DATASETS, categories, eval_batches, patches, train_dataset
from vadjax.data.pipeline import train_iterator
from vadjax.data.sources import ArraySource, Subset, field, normal_part
from vadjax.eval import metrics as metrics_lib, plots, report as report_lib
from vadjax.eval import video as video_lib
from vadjax.eval import thresholds as thr
from vadjax.methods import METHODS
from vadjax.nn.layers import IMPLS
from vadjax.models import MODELS
from vadjax.registry import UserError
from vadjax.train import steps as steps_lib
from vadjax.train import svdd
from vadjax.train.checkpoint import Checkpointer
from vadjax.train.logging import RunLogger

MODES = ('train', 'eval', 'train_and_eval')


class TrainingDiverged(UserError):
  pass


class Plateau:
  """ReduceLROnPlateau and early stopping on the validation loss (seed 001 §4.4.1)."""

  def __init__(self, config, state: dict | None = None):
    self.factor, self.patience = config.plateau_factor, config.plateau_patience
    self.stop_patience, self.min_lr = config.early_stopping_patience, config.min_learning_rate
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


def fingerprint(config, image_shape) -> dict:
  return {'model': config.model, 'method': config.method, 'dataset': config.dataset,
          'image_shape': list(image_shape), 'dtype': config.dtype}


def _prepare_workdir(workdir: str, fp: dict) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, '.write_test')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise UserError(f'cannot write to workdir {workdir!r} ({e.strerror}); pass a writable '
                    f'--workdir') from None
  path = os.path.join(workdir, 'experiment.json')
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old != fp:
      raise UserError(f'workdir {workdir!r} holds an experiment of {old}, not {fp}; use '
                      f'another --workdir (nothing was changed)')
  elif jax.process_index() == 0:
    with open(path, 'w') as f:
      json.dump(fp, f)


def validate(config) -> None:
  """Value checks that the config's types alone do not catch."""
  choices = {'dtype': ('float32', 'bfloat16', 'float16'), 'positive': ('anomaly', 'normal'),
             'conv_impl': IMPLS}
  for key, allowed in choices.items():
    if config[key] not in allowed:
      raise UserError(f'config {key}={config[key]!r}; use one of {", ".join(allowed)}')
  for key in ('num_epochs', 'batch_size', 'eval_batch_size', 'log_every_steps',
              'checkpoint_every_epochs'):
    if config[key] <= 0:
      raise UserError(f'config {key} must be positive, got {config[key]}')
  if not config.seeds:
    raise UserError('config seeds is empty; give at least one, e.g. --config.seeds="(0,)"')
  if config.score_window < 0 or (config.score_window and
                                 config.method not in ('reconstruction', 'memae')):
    raise UserError(f'config score_window={config.score_window} works with the methods '
                    'reconstruction and memae only, as 0 (frame mean) or a window size > 0; '
                    f'method is {config.method!r}')
  schedule = config.get('lr_schedule', 'constant')
  if schedule not in ('constant', 'cyclic'):
    raise UserError(f"config lr_schedule={schedule!r}; use 'constant' or 'cyclic'")
  if schedule == 'cyclic' and config.plateau_factor != 1.0:
    raise UserError('lr_schedule=cyclic sets the learning rate every step; set '
                    'plateau_factor=1.0 (ReduceLROnPlateau would be overridden)')


class Experiment:
  """What all runs of one config share: model, method, mesh and compiled steps."""

  def __init__(self, config):
    validate(config)
    self.config = config
    self.model_cls = MODELS.get(config.model)
    self.method = METHODS.get(config.method)(config)
    DATASETS.get(config.dataset)
    self.mesh = parallel.make_mesh(config.num_devices)
    parallel.local_batch_size(config.batch_size, self.mesh)
    parallel.local_batch_size(config.eval_batch_size, self.mesh)
    self._steps = {}

  def steps(self, image_shape) -> steps_lib.Steps:
    if image_shape not in self._steps:
      kwargs = dict(self.config.model_kwargs)
      model = self.model_cls(channels=image_shape[-1], dtype=jnp.dtype(self.config.dtype),
                             conv_impl=self.config.conv_impl, **kwargs)
      tx = steps_lib.optimizer_for(self.method, self.config)
      self._steps[image_shape] = steps_lib.build_steps(model, self.method, tx, self.mesh,
                                                       image_shape)
    return self._steps[image_shape]

  def categories(self) -> list[str]:
    c = self.config.categories
    known = categories(self.config.dataset)
    chosen = known if c == 'all' else [x.strip() for x in str(c).replace(';', ',').split(',')
                                        if x.strip()]
    unknown = [x for x in chosen if x not in known]
    if unknown:
      raise UserError(f'unknown {self.config.dataset} categories {unknown}; known: '
                      f'{", ".join(known)} (or all)')
    return chosen


def score_split(steps, state, source, mesh, batch_size: int, keep_recon=False) -> dict:
  """Scores every record of a source: per-record scores (and a method's other scores
  `score/<name>`), pixel maps where the method makes them, the top patch of patch stacks
  and, when asked (the few plotted samples), reconstructions."""
  fields = ('image', 'offset') if 'offset' in source[0] else ('image',)
  parts = {}
  for batch, n in eval_batches(source, batch_size, fields):
    out = jax.device_get(steps.score(state, parallel.shard_batch(batch, mesh)))
    for k, v in out.items():
      if k != 'recon' or keep_recon:
        parts.setdefault(k, []).append(v[:n])
  return {k: np.concatenate(v) for k, v in parts.items()}


def mean_loss(steps, state, source, mesh, batch_size: int) -> float:
  """The method's loss over a whole split (padding rows weighted out)."""
  total, count = 0.0, 0
  for batch, n in eval_batches(source, batch_size):
    total += float(steps.loss(state, parallel.shard_batch(batch, mesh))) * n
    count += n
  return total / max(count, 1)


def _check_finite(losses: np.ndarray, first_step: int, run_name: str, last_saved) -> None:
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    step = first_step + int(bad[0])
    raise TrainingDiverged(
        f'[{run_name}] the training loss became {losses[bad[0]]} at step {step}; stopped '
        f'without saving it (last good checkpoint: step {last_saved}). Lower learning_rate '
        f'or check the data for NaN values')


def train_run(exp: Experiment, splits, run_dir: str, seed: int, name: str) -> dict:
  """Trains one run (resuming if a checkpoint exists) and calibrates its scores."""
  cfg = exp.config
  steps = exp.steps(splits.image_shape)
  fp = fingerprint(cfg, splits.image_shape)
  state = steps.init(jax.random.PRNGKey(seed))
  ckpt = Checkpointer(os.path.join(run_dir, 'checkpoints'))
  ds = train_dataset(splits.train, cfg.batch_size, seed, cfg.num_epochs)
  iterator = train_iterator(ds, cfg.data.workers)
  meta = {'fingerprint': fp, 'step': 0, 'epoch': 0, 'history': [], 'finished': False,
          'plateau': None}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state, fp)
    try:
      iterator.set_state(meta['data_iterator'])
    except (KeyError, TypeError, ValueError) as e:
      raise UserError(f'cannot resume the data position in {run_dir} ({e!r}); resume with '
                      f'the data.workers of the interrupted run (0 vs > 0 store different '
                      f'positions)') from None
    logging.info('[%s] resumed from step %d (epoch %d)', name, meta['step'], meta['epoch'])
  if meta['finished']:
    ckpt.close()
    return meta

  steps_per_epoch = len(splits.train) // cfg.batch_size
  total = steps_per_epoch * cfg.num_epochs
  plateau = Plateau(cfg, meta['plateau'])
  val_normals = normal_part(splits.val)
  by_auroc = getattr(exp.method, 'validation', 'loss') == 'auroc'
  if by_auroc:       # ADACL: val normals and their created anomalies (seed 002 §4.4)
    val_set = exp.method.validation_set(val_normals, seed)
  logger = RunLogger(run_dir, name, total, meta['step'])
  step, epoch, last_saved = meta['step'], meta['epoch'], ckpt.latest_step()
  pending, stop, t_start = [], False, time.perf_counter()
  compile_s = None
  try:
    while step < total and not stop:
      batch = parallel.shard_batch(next(iterator), exp.mesh)
      state, metrics = steps.train(state, batch)
      pending.append(metrics['loss'])
      step += 1
      if compile_s is None:   # compile + dispatch of the first step (it runs async)
        compile_s = time.perf_counter() - t_start
      epoch_end = step % steps_per_epoch == 0
      if not (epoch_end or step % cfg.log_every_steps == 0):
        continue
      losses = np.asarray(jax.device_get(jnp.stack(pending)))
      _check_finite(losses, step - len(pending) + 1, name, last_saved)
      pending, values = [], {'train_loss': float(losses.mean())}
      if epoch_end:
        epoch += 1
        state = steps_lib.set_epoch(state, epoch)
        lr = steps_lib.get_learning_rate(state)
        if by_auroc:
          val = score_split(steps, state, val_set, exp.mesh, cfg.eval_batch_size)['score']
          values['val_auroc'] = metrics_lib.auroc(field(val_set, 'label'), val)
          watched = -values['val_auroc']
        else:
          values['val_loss'] = watched = mean_loss(steps, state, val_normals, exp.mesh,
                                                   cfg.eval_batch_size)
        values['learning_rate'] = lr
        new_lr, stop = plateau.update(watched, lr)
        if new_lr != lr:
          state = steps_lib.set_learning_rate(state, new_lr)
          logging.info('[%s] val loss plateaued: learning rate %.3g -> %.3g', name, lr, new_lr)
        meta['history'].append({'epoch': epoch, 'step': step, **values})
        # the end of training is saved below, together with the calibration
        if epoch % cfg.checkpoint_every_epochs == 0 and not stop and step < total:
          meta.update(step=step, epoch=epoch, plateau=plateau.state,
                      data_iterator=iterator.get_state())
          ckpt.save(step, state, meta)
          last_saved = step
        if stop:
          logging.info('[%s] early stopping at epoch %d (validation %s did not improve for '
                       '%d epochs)', name, epoch, 'AUROC' if by_auroc else 'loss',
                       cfg.early_stopping_patience)
      logger.write(step, {**values, 'epoch': epoch})
      logger.progress(step, epoch, values)
  finally:
    logger.close()
    ckpt.wait()

  t_train = time.perf_counter() - t_start
  if cfg.svdd_epochs > 0:
    variables, meta['svdd'] = svdd.finetune(
        steps.model, {'params': state.params, 'batch_stats': state.batch_stats}, splits.train,
        epochs=cfg.svdd_epochs, learning_rate=cfg.svdd_learning_rate, nu=cfg.svdd_nu,
        weight_decay=cfg.svdd_weight_decay, warmup_epochs=cfg.svdd_warmup_epochs,
        batch_size=cfg.batch_size, seed=seed,
        mesh=exp.mesh)
    state = state.replace(params=jax.device_put(variables['params'],
                                                parallel.replicated(exp.mesh)))
    logging.info('[%s] SVDD fine-tuning: %d epochs, radius %.4g', name, cfg.svdd_epochs,
                 meta['svdd']['radius'])
  calib = calibrate(exp, steps, state, splits)
  meta.update(step=step, epoch=epoch, plateau=plateau.state, finished=True,
              data_iterator=iterator.get_state(), stopped_early=stop,
              timings={'train_s': t_train, 'compile_s': compile_s,
                       'steps_per_s': (step - logger.start) / max(t_train, 1e-9)},
              **calib)
  ckpt.save(step, state, meta)
  ckpt.wait()
  ckpt.close()
  return meta


def calibrate(exp: Experiment, steps, state, splits) -> dict:
  """Fits the score normaliser on normal train + val scores and every threshold on the
  normalised train/val scores (never on test)."""
  cfg = exp.config
  train = score_split(steps, state, splits.train, exp.mesh, cfg.eval_batch_size)['score']
  val = score_split(steps, state, splits.val, exp.mesh, cfg.eval_batch_size)['score']
  labels, kinds = field(splits.val, 'label'), field(splits.val, 'kind')
  norm = thr.ScoreNormalizer.fit(np.concatenate([train, val[labels == 0]]))
  thresholds = thr.fit_thresholds(norm(train), norm(val), labels, kinds, cfg.contamination)
  return {'normalizer': norm.to_dict(), 'thresholds': thresholds}


def eval_run(exp: Experiment, splits, run_dir: str, seed: int, name: str,
             plots: bool) -> dict:
  """Scores the test split with the run's finished checkpoint (restored from disk, as in
  --mode=eval); returns its metrics."""
  cfg = exp.config
  steps = exp.steps(splits.image_shape)
  state = steps.init(jax.random.PRNGKey(seed))
  ckpt = Checkpointer(os.path.join(run_dir, 'checkpoints'))
  if ckpt.latest_step() is None:
    raise UserError(f'no checkpoint in {run_dir}; run with --mode=train_and_eval first')
  state, meta = ckpt.restore(state, fingerprint(cfg, splits.image_shape))
  ckpt.close()
  if not meta.get('finished'):
    raise UserError(f'the run in {run_dir} has not finished training (step {meta["step"]}); '
                    f'run --mode=train to finish it')
  t0 = time.perf_counter()
  out = score_split(steps, state, splits.test, exp.mesh, cfg.eval_batch_size)
  t_score = time.perf_counter() - t0
  norm = thr.ScoreNormalizer(**meta['normalizer'])
  masks = field(splits.test, 'mask') if splits.has_masks else None
  labels = field(splits.test, 'label')
  if 'pixel' not in out:      # a method without pixel maps (ADACL's regressor)
    masks = None
  result = report_lib.run_metrics(
      labels=labels, kinds=field(splits.test, 'kind'),
      scores=norm(out['score']), thresholds=meta['thresholds'], kind_names=splits.kind_names,
      pixel_scores=out['pixel'] if masks is not None else None, masks=masks,
      positive=cfg.positive)
  for k in out:               # a method's other scores (ALPS: clean, perturbed, mean)
    if k.startswith('score/'):
      result['image'][f'auroc_{k[6:]}'] = metrics_lib.auroc(labels, out[k])
  videos = field(splits.test, 'video') if 'video' in splits.test[0] else None
  if videos is not None:
    frame = video_lib.frame_metrics(labels, out['score'], videos, field(splits.test, 'kind'),
                                    splits.kind_names)
    result['per_kind_auroc_per_video_norm'] = frame.pop('per_kind_auroc_per_video_norm')
    result['image'].update(frame)
  result.update(name=name, seed=seed, epochs=meta['epoch'], steps=meta['step'],
                stopped_early=meta.get('stopped_early', False),
                timings={**meta.get('timings', {}), 'score_s': t_score,
                         'score_samples_per_s': len(splits.test) / max(t_score, 1e-9)})
  if plots and jax.process_index() == 0:
    result['plots'] = _plots(exp, steps, state, splits, run_dir, meta, out, norm, videos)
  if jax.process_index() == 0:
    with open(os.path.join(run_dir, 'metrics.json'), 'w') as f:
      json.dump(result, f, indent=1)
  return result


def _frame(x, offset, clip_length=None):
  """The scored frame of a clip record (images pass through). A prediction (Seq2Seq) of
  the clip's last frames gives its frame nearest to the scored one."""
  if x.ndim != 4:
    return x
  offset -= (clip_length or len(x)) - len(x)
  return x[min(max(offset, 0), len(x) - 1)]


def _spread(indices, n):
  """n of the indices, evenly spread."""
  return indices[np.linspace(0, len(indices) - 1, n).astype(int)] if n else indices[:0]


def _plots(exp, steps, state, splits, run_dir, meta, out, norm, videos) -> dict:
  """Report figures: ROC/PR, histogram, training curves, reconstructions of normal and
  anomalous test samples spread over the split, attention maps, per-video score timelines,
  decoded memory items."""
  cfg, test = exp.config, splits.test
  labels = field(test, 'label')
  normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels != 0)
  n_bad = min(cfg.num_plot_samples // 2, len(anomalous))
  n_good = min(cfg.num_plot_samples - n_bad, len(normal))
  idx = np.concatenate([_spread(normal, n_good), _spread(anomalous, n_bad)])
  sample = score_split(steps, state, Subset(test, idx), exp.mesh, cfg.eval_batch_size,
                       keep_recon=True)
  records = [test[int(i)] for i in idx]
  recons = sample.get('recon')
  if 'patch' in sample:                     # patch stacks: each frame's top patch
    images = np.stack([r['image'][p] for r, p in zip(records, sample['patch'])])
    model_input = images
  else:
    offsets = [int(r.get('offset', 0)) for r in records]
    images = np.stack([_frame(r['image'], o) for r, o in zip(records, offsets)])
    if recons is not None:
      recons = np.stack([_frame(x, o, len(r['image']))
                         for x, o, r in zip(recons, offsets, records)])
    model_input = np.stack([r['image'] for r in records])
  masks = (np.stack([r['mask'] for r in records])
           if splits.has_masks and 'patch' not in sample else None)
  paths = report_lib.run_plots(run_dir, labels=labels, scores=norm(out['score']),
                               thresholds=meta['thresholds'], history=meta['history'],
                               images=images, recons=recons, pixel=sample.get('pixel'),
                               masks=masks)
  if hasattr(exp.method, 'figures'):        # a method's own figures (ADACL's anomalies)
    paths.update(exp.method.figures(
        run_dir, images, lambda x: score_split(steps, state, ArraySource(image=x), exp.mesh,
                                               cfg.eval_batch_size)['score']))
  if videos is not None:
    paths['score_timelines'] = plots.score_timelines(
        os.path.join(run_dir, 'score_timelines.png'),
        video_lib.per_video_normalized(out['score'], videos), labels, videos,
        smoothed=video_lib.per_video_irregularity(out['score'], videos))
  model = steps.model
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  x = jnp.asarray(model_input)
  if 'attention' in jax.eval_shape(model.apply, variables, x):   # attention models only
    maps = jax.device_get(jax.jit(lambda v, x: model.apply(v, x)['attention'])(variables, x))
    paths['attention_maps'] = plots.attention_maps(
        os.path.join(run_dir, 'attention_maps.png'), images, maps, labels[idx])
  if getattr(model, 'use_memory', False):
    x = jax.ShapeDtypeStruct((1, *splits.image_shape), jnp.float32)
    grid = jax.eval_shape(model.apply, variables, x)['memory_weights'].shape[1:-1]
    items = jax.device_get(model.apply(variables, grid, method=model.decode_items))
    if items.ndim == 5:                     # clips: the middle frame
      items = items[:, items.shape[1] // 2]
    paths['memory_items'] = plots.image_grid(
        os.path.join(run_dir, 'memory_items.png'), items,
        'decoded single memory items (as in seed 003)')
  return paths


def train_and_evaluate(config, workdir: str, mode: str = 'train_and_eval') -> dict | None:
  """Runs every (category, seed) of the config in `workdir`; returns the report (or None
  when mode is 'train')."""
  if mode not in MODES:
    raise UserError(f'unknown mode {mode!r}; use one of {", ".join(MODES)}')
  parallel.maybe_initialize_distributed(config)
  exp = Experiment(config)
  cats = exp.categories()
  t0 = time.perf_counter()
  results, fp_checked = [], False
  for cat in cats:
    splits = DATASETS.get(config.dataset)(cat, config.image_size, config.data)
    d = config.data
    if d.patch_size > 0:
      splits = patches.patch_splits(splits, config.dataset, d.patch_size, d.patch_stride,
                                    d.patch_test_stride, d.patch_min_change)
    splits.check(config.dataset)
    if not fp_checked:   # model vs data shape first: a bad config must not claim the workdir
      jax.eval_shape(exp.steps(splits.image_shape).init, jax.random.PRNGKey(0))
      _prepare_workdir(workdir, fingerprint(config, splits.image_shape))
      fp_checked = True
    for i, seed in enumerate(config.seeds):
      name = f'{config.dataset}/{cat}/seed{seed}'
      run_dir = os.path.join(workdir, cat, f'seed{seed}')
      os.makedirs(run_dir, exist_ok=True)
      if mode in ('train', 'train_and_eval'):
        train_run(exp, splits, run_dir, seed, name)
      if mode in ('eval', 'train_and_eval'):
        r = eval_run(exp, splits, run_dir, seed, name, plots=(i == 0 and config.plots))
        r['category'] = cat
        results.append(r)
        logging.info('[%s] test AUROC %.4f', name, r['image']['auroc'])
  if mode == 'train':
    return None
  report = report_lib.summarize(config, results, time.perf_counter() - t0)
  if jax.process_index() == 0:
    report_lib.write(report, workdir)
    print(report_lib.table(report))
  return report
