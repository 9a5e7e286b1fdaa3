"""Experiments and trained runs: `train_and_evaluate(config, workdir)` and
`restore(workdir)`.

An experiment is one config in one workdir: for every category of the protocol (normal
class, texture ...) and every seed, one run in `<workdir>/<category>/seed<seed>`. A trained
run is a value (`TrainedRun`): model, method, parameters, score normaliser, thresholds and
config, restored from the workdir alone; evaluation, explanation, prediction and export
start from it.
"""

import dataclasses
import glob
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vadjax import parallel
from vadjax.data import DATASETS, categories, patches
from vadjax.data.sources import ArraySource, known_categories
from vadjax.eval import report as report_lib
from vadjax.eval import thresholds as thr
from vadjax.methods import GROUP_DEFAULTS, METHODS
from vadjax.models import MODELS
from vadjax.nn.layers import IMPLS
from vadjax.registry import UserError
from vadjax.train import evaluate as evaluate_lib
from vadjax.train import loop
from vadjax.train import steps as steps_lib
from vadjax.train import workdir as workdir_lib
from vadjax.train.checkpoint import Checkpointer

MODES = ('train', 'eval', 'train_and_eval')


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
  if config.num_train_steps < 0:
    raise UserError(f'config num_train_steps must be 0 (use num_epochs) or positive, got '
                    f'{config.num_train_steps}')
  if not config.seeds:
    raise UserError('config seeds is empty; give at least one, e.g. --config.seeds="(0,)"')
  opt = config.optimizer
  if opt.lr_schedule not in ('constant', 'cyclic'):
    raise UserError(f"config optimizer.lr_schedule={opt.lr_schedule!r}; use 'constant' or "
                    "'cyclic'")
  if opt.lr_schedule == 'cyclic' and opt.plateau_factor != 1.0:
    raise UserError('optimizer.lr_schedule=cyclic sets the learning rate every step; set '
                    'optimizer.plateau_factor=1.0 (ReduceLROnPlateau would be overridden)')


def _check_groups(config, method) -> None:
  """Settings of a group the method does not read are an error, not silently ignored."""
  for group, defaults in GROUP_DEFAULTS.items():
    if group in method.groups or group not in config:
      continue
    given = json.loads(json.dumps(config[group].to_dict()))
    if given != json.loads(json.dumps(defaults)):
      raise UserError(f'config group {group!r} is set ({given}) but method '
                      f'{config.method!r} does not use it; it reads '
                      f'{", ".join(method.groups) or "no group"}')


class Experiment:
  """What all runs of one config share: model, method, mesh and compiled steps."""

  def __init__(self, config):
    validate(config)
    self.config = config
    self.model_cls = MODELS.get(config.model)
    self.method = METHODS.get(config.method)(config)
    _check_groups(config, self.method)
    DATASETS.get(config.dataset)
    self.mesh = parallel.make_mesh(config.num_devices)
    parallel.local_batch_size(config.batch_size, self.mesh)
    parallel.local_batch_size(config.eval_batch_size, self.mesh)
    self._steps = {}

  def steps(self, image_shape) -> steps_lib.Steps:
    image_shape = tuple(image_shape)
    if image_shape not in self._steps:
      kwargs = dict(self.config.model_kwargs)
      model = self.model_cls(channels=image_shape[-1], dtype=jnp.dtype(self.config.dtype),
                             conv_impl=self.config.conv_impl, **kwargs)
      tx = self.method.optimizer(self.config.optimizer, steps_lib.make_optimizer)
      self._steps[image_shape] = steps_lib.build_steps(model, self.method, tx, self.mesh,
                                                       image_shape)
    return self._steps[image_shape]

  def categories(self) -> list[str]:
    return chosen_categories(self.config.dataset, self.config.categories)


def chosen_categories(dataset: str, spec) -> list[str]:
  """The categories `spec` names ('all', or a list separated by ',' or ';') of `dataset`;
  unknown ones are an error listing the known."""
  known = known_categories(dataset)
  chosen = categories(dataset) if spec == 'all' else [x.strip() for x in str(spec).replace(';', ',').split(',')
                                        if x.strip()]
  unknown = [x for x in chosen if x not in known]
  if unknown:
    raise UserError(f'unknown {dataset} categories {unknown}; known: {", ".join(known)} '
                    '(or all)')
  return chosen


def load_splits(config, category: str, workdir: str | None = None):
  """The train/val/test splits of one category, with the patch protocol applied when the
  config asks for it (METHODS.md §0), made into what the method's model reads
  (`Method.prepare`; its costly parts cached in `<workdir>/cache`) and checked."""
  splits = DATASETS.get(config.dataset)(category, config.image_size, config.data)
  p = config.data.patches
  if p.size > 0:
    splits = patches.patch_splits(splits, config.dataset, p.size, p.stride, p.test_stride,
                                  p.min_change)
  cache = os.path.join(workdir, 'cache') if workdir else None
  splits = METHODS.get(config.method)(config).prepare(splits, config.dataset, category, cache)
  splits.check(config.dataset)
  return splits


@dataclasses.dataclass
class TrainedRun:
  """One trained (category, seed) run, ready to score new data."""
  experiment: Experiment
  category: str
  seed: int
  run_dir: str
  image_shape: tuple
  steps: steps_lib.Steps
  state: steps_lib.TrainState
  meta: dict

  config = property(lambda self: self.experiment.config)
  method = property(lambda self: self.experiment.method)
  mesh = property(lambda self: self.experiment.mesh)
  model = property(lambda self: self.steps.model)
  thresholds = property(lambda self: self.meta['thresholds'])
  name = property(lambda self: f'{self.config.dataset}/{self.category}/seed{self.seed}')

  @property
  def variables(self) -> dict:
    return {'params': self.state.params, 'batch_stats': self.state.batch_stats}

  @property
  def normalizer(self) -> thr.ScoreNormalizer:
    return thr.ScoreNormalizer(**self.meta['normalizer'])

  def score(self, images, offsets=None) -> dict:
    """Raw scores of `images` ((N, *image_shape), or patch stacks (N, P, *image_shape)):
    {'score': (N,), and 'pixel', 'score/<name>' where the method makes them}; `offsets`
    are the scored frames of clips (default: the centre frame)."""
    images = np.asarray(images, np.float32)
    if images.shape[-len(self.image_shape):] != self.image_shape:
      shape = ', '.join(map(str, self.image_shape))
      raise UserError(f'this run scores inputs of shape (N, {shape}), got {images.shape}')
    fields = {'image': images}
    if offsets is not None:
      fields['offset'] = np.asarray(offsets, np.int32)
    return self.score_source(ArraySource(**fields))

  def score_source(self, source, keep_maps: bool = True) -> dict:
    """Raw scores of every record of a source (records as the test split's); the pixel
    maps too unless `keep_maps` is False (a whole split)."""
    return evaluate_lib.score_split(self.steps, self.state, source, self.mesh,
                                    self.config.eval_batch_size, keep_maps=keep_maps)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (its `config.json`)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise UserError(f'{workdir!r} holds no experiment (no config.json); train one with '
                    'python -m experiments.main --workdir=...')
  with open(path) as f:
    raw = json.load(f)
  tuples = lambda x: (tuple(tuples(v) for v in x) if isinstance(x, list) else
                      {k: tuples(v) for k, v in x.items()} if isinstance(x, dict) else x)
  config = ml_collections.ConfigDict(tuples(raw))
  # score on this machine's devices: the run's own count where it fits, else one
  n = config.num_devices or jax.device_count()
  if n > jax.device_count() or config.eval_batch_size % n:
    logging.info('restoring %s on 1 device (it ran on %d)', workdir, n)
    config.num_devices = 1
  config.lock()
  return config


def stored_fingerprint(workdir: str) -> dict:
  path = os.path.join(workdir, 'experiment.json')
  if not os.path.exists(path):
    raise UserError(f'{workdir!r} holds no trained experiment (no experiment.json)')
  with open(path) as f:
    return json.load(f)


def restore(workdir: str, category: str | None = None, seed: int | None = None,
            config=None, experiment: Experiment | None = None) -> TrainedRun:
  """The trained run of `category` and `seed` (default: the config's first ones) in
  `workdir`, from the workdir alone (its config.json) unless `config` is given."""
  config = config if config is not None else load_config(workdir)
  exp = experiment or Experiment(config)
  category = category if category is not None else exp.categories()[0]
  seed = seed if seed is not None else int(config.seeds[0])
  run_dir = os.path.join(workdir, str(category), f'seed{seed}')
  if not os.path.isdir(os.path.join(run_dir, 'checkpoints')):
    runs = sorted(os.path.relpath(os.path.dirname(p), workdir) for p in
                  glob.glob(os.path.join(workdir, '*', 'seed*', 'checkpoints')))
    raise UserError(f'no run of category {category!r}, seed {seed} in {workdir!r}; it holds '
                    f'{", ".join(runs) or "none"}')
  fp = stored_fingerprint(workdir)
  # the run's own input shape (categories may differ); runs saved before it was recorded:
  # the experiment's
  shape_of = lambda meta: tuple(meta.get('image_shape', fp['image_shape']))
  ckpt = Checkpointer(os.path.join(run_dir, 'checkpoints'))
  try:
    if ckpt.latest_step() is None:
      raise UserError(f'no checkpoint in {run_dir}; run with --mode=train_and_eval first')
    state, meta = ckpt.restore(
        lambda meta: exp.steps(shape_of(meta)).init(jax.random.PRNGKey(seed)), fp)
  finally:
    ckpt.close()
  image_shape = shape_of(meta)
  steps = exp.steps(image_shape)
  if not meta.get('finished'):
    raise UserError(f'the run in {run_dir} has not finished training (step {meta["step"]}); '
                    f'run --mode=train to finish it')
  return TrainedRun(exp, str(category), seed, run_dir, image_shape, steps, state, meta)


def _claim(exp: Experiment, workdir: str, splits, mode: str) -> dict:
  """Checks the model against the data's shape first (a bad config must not claim the
  workdir), then binds the workdir to this experiment (evaluation only checks it)."""
  jax.eval_shape(exp.steps(splits.image_shape).init, jax.random.PRNGKey(0))
  fp = workdir_lib.fingerprint(exp.config, splits.image_shape, splits.digest)
  workdir_lib.bind(workdir, exp.config, fp, claim=mode != 'eval')
  return fp


def _finished_report(workdir: str, cats, seeds) -> dict | None:
  """The report of this experiment when every one of its runs is already in it."""
  path = os.path.join(workdir, 'report.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    report = json.load(f)
  done = {(r['category'], r['seed']) for r in report.get('runs', [])}
  return report if done == {(c, int(s)) for c in cats for s in seeds} else None


def train_and_evaluate(config, workdir: str, mode: str = 'train_and_eval') -> dict | None:
  """Runs every (category, seed) of the config in `workdir`; returns the report (or None
  when mode is 'train'). A finished experiment is not run again: its report is returned
  and left as it is."""
  if mode not in MODES:
    raise UserError(f'unknown mode {mode!r}; use one of {", ".join(MODES)}')
  parallel.maybe_initialize_distributed(config)
  exp = Experiment(config)
  cats = exp.categories()
  workdir_lib.check_writable(workdir)
  with workdir_lib.lock(workdir):
    t0, results, fp = time.perf_counter(), [], None
    for cat in cats:
      splits = load_splits(config, cat, workdir)
      if fp is None:
        fp = _claim(exp, workdir, splits, mode)
        done = _finished_report(workdir, cats, config.seeds)
        if mode == 'train_and_eval' and done is not None:
          logging.info('every run of %s is trained and evaluated; report.json unchanged',
                       workdir)
          print(report_lib.table(done))
          return done
      data = evaluate_lib.EvalSet.from_splits(splits) if mode != 'train' else None
      for i, seed in enumerate(config.seeds):
        run_dir = os.path.join(workdir, cat, f'seed{seed}')
        os.makedirs(run_dir, exist_ok=True)
        if mode != 'eval':
          loop.train_run(exp, splits, run_dir, seed, fp)
        if mode != 'train':
          run = restore(workdir, cat, seed, config, exp)
          r = evaluate_lib.evaluate(run, data, plots=i == 0 and config.plots)
          results.append({**r, 'category': cat})
          logging.info('[%s] test AUROC %.4f', run.name, r['image']['auroc'])
    if mode == 'train':
      return None
    report = report_lib.summarize(config, results, time.perf_counter() - t0)
    if jax.process_index() == 0:
      report_lib.write(report, workdir)
      print(report_lib.table(report))
    return report
