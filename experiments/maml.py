"""Few-shot scene adaptation on walkway cameras (seed 000 §2.2; Lu et al., ECCV 2020).

  python -m experiments.maml --config=experiments/configs/maml.py --workdir=runs/maml

Per seed: meta-train the U-Net frame predictor with MAML over the training scenes, and
pretrain the same model jointly on all of their pairs for as many steps with as many pairs
per step. Then on every held-out scene and every K in `shots`, with the same K pairs of its
normal video for every method:
  maml           MAML's θ adapted with its inner loop (the meta-test of eq. 2.2)
  maml_no_adapt  MAML's θ as it is
  pretrained     the joint model as it is (no adaptation)
  finetuned      the joint model fine-tuned on the K pairs (`fit_steps` Adam steps)
  finetuned_sgd  the joint model adapted by MAML's inner loop (its SGD steps and α)
  scratch        a new model trained on the K pairs alone (`fit_steps` Adam steps)
and score the scene's test videos by the prediction error of each frame from the t before
it (the first t frames take frame t's score). Frame AUROCs (global, per-video normalised,
seed 001's regularity) per (scene, seed); report.json holds them and their mean ± 95% CI
over held-out scenes × seeds; the table is printed and written to report.md.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.cli import run_or_fail, start
from vadjax.data import scenes
from vadjax.eval import metrics, plots, video as video_lib
from vadjax.methods import maml
from vadjax.models.frame_predictor import UNetPredictor
from vadjax.registry import UserError


METHODS = ('maml', 'maml_no_adapt', 'pretrained', 'finetuned', 'finetuned_sgd', 'scratch')
POOLINGS = ('auroc', 'auroc_per_video_norm', 'auroc_regularity')


def _check(c) -> None:
  if c.maml.order not in ('first', 'second'):
    raise UserError(f"maml.order must be 'first' or 'second', got {c.maml.order!r}")
  for key in ('train_scenes', 'held_out_scenes', 'frames_in', 'fit_steps'):
    if c[key] < 1:
      raise UserError(f'{key} must be at least 1, got {c[key]}')
  if c.maml.meta_batch > c.train_scenes:
    raise UserError(f'maml.meta_batch ({c.maml.meta_batch}) exceeds train_scenes '
                    f'({c.train_scenes})')


def _load(c, ids, num_test):
  return [scenes.load(i, c.image_size, c.video.length, c.video.num_train, num_test,
                      c.category) for i in ids]


def jitted(c, model) -> dict:
  """The jitted functions of the protocol, built once: every seed reuses their
  compilations. The meta step runs the model in its order's convolution form
  (`maml.conv_impl`), the rest in the plain one: the parameters are the same."""
  tx = optax.adam(c.maml.outer_lr)
  apply = model.apply
  meta_apply = model.clone(conv_impl=maml.conv_impl(c.maml.order)).apply
  return {'tx_init': jax.jit(tx.init),      # the first Adam state, one program
          'meta_step': maml.make_meta_step(meta_apply, tx, c.maml.inner_lr,
                                           c.maml.inner_steps, c.maml.order == 'first',
                                           c.maml.task_map),
          'train_step': maml.make_train_step(apply, tx),
          'adapt': jax.jit(lambda p, batch, a: maml.adapt(apply, p, batch, a,
                                                          c.maml.inner_steps)),
          'errors': jax.jit(lambda p, x, y: maml.frame_errors(apply, p, x, y))}


def meta_train(c, fns, params, train_scenes, rng):
  """MAML's meta-parameters after `meta_steps` outer updates, and the loss curve."""
  meta = maml.init_meta(params, c.maml.inner_lr, c.maml.learn_inner_lr)
  state, step, losses = fns['tx_init'](meta), fns['meta_step'], []
  for i in range(c.maml.meta_steps):
    chosen = rng.choice(len(train_scenes), c.maml.meta_batch, replace=False)
    tasks = scenes.stack([scenes.task(rng, train_scenes[j].train, c.frames_in, c.maml.k)
                          for j in chosen])
    meta, state, loss = step(meta, state, tasks)
    losses.append(float(loss))
    if (i + 1) % max(1, c.maml.meta_steps // 10) == 0:
      logging.info('meta step %d/%d: validation loss %.5f', i + 1, c.maml.meta_steps, loss)
  return meta, losses


def pretrain(c, fns, params, train_scenes, rng):
  """The joint baseline: as many Adam steps and pairs per step as meta-training, on the
  pairs of all training scenes pooled."""
  state, step, losses = fns['tx_init'](params), fns['train_step'], []
  for _ in range(c.maml.meta_steps):
    chosen = rng.choice(len(train_scenes), c.maml.meta_batch, replace=False)
    batch = [scenes.task(rng, train_scenes[j].train, c.frames_in, c.maml.k) for j in chosen]
    pooled = {f: np.concatenate([b[s][f] for b in batch for s in ('train', 'val')])
              for f in ('x', 'y')}
    params, state, loss = step(params, state, pooled)
    losses.append(float(loss))
  return params, losses


def scene_scores(c, errors_fn, params, scene) -> dict:
  """Frame AUROCs of a scene's test videos under `params`."""
  t, labels, scores, videos = c.frames_in, [], [], []
  for v, video in enumerate(scene.test):
    n = len(video.frames)
    index = np.asarray([(v, s) for s in range(n - t)])
    errs = []
    for first in range(0, len(index), c.eval_batch_size):
      b = scenes.pairs(scene.test, index[first:first + c.eval_batch_size], t)
      errs.append(np.asarray(errors_fn(params, b['x'], b['y'])))
    e = np.concatenate(errs)
    scores.append(np.concatenate([np.full(t, e[0]), e]))
    labels.append(video.labels)
    videos.append(np.full(n, v))
  labels, scores, videos = map(np.concatenate, (labels, scores, videos))
  m = video_lib.frame_metrics(labels, scores, videos)
  return {'auroc': metrics.auroc(labels, scores), **{k: m[k] for k in POOLINGS[1:]}}


def evaluate(c, fns, init, meta, joint, held_out, seed) -> list[dict]:
  rate = meta.get('alpha', c.maml.inner_lr)
  tx_init, train_step, adapt, errors_fn = (fns['tx_init'], fns['train_step'], fns['adapt'],
                                            fns['errors'])
  rows = []
  for scene in held_out:
    for k in c.shots:
      rng = np.random.default_rng((seed, scene.scene, k))
      index = scenes.segments(scene.train, c.frames_in)
      shots = scenes.pairs(scene.train, index[rng.choice(len(index), k, replace=False)],
                           c.frames_in)
      fitted = {}
      for name, start_params in (('finetuned', joint), ('scratch', init)):
        params, state = start_params, tx_init(start_params)
        for _ in range(c.fit_steps):
          params, state, _ = train_step(params, state, shots)
        fitted[name] = params
      models = {'maml': adapt(meta['params'], shots, rate), 'maml_no_adapt': meta['params'],
                'pretrained': joint, 'finetuned': fitted['finetuned'],
                'finetuned_sgd': adapt(joint, shots, c.maml.inner_lr),
                'scratch': fitted['scratch']}
      for name, params in models.items():
        rows.append({'method': name, 'k': k, 'scene': scene.scene, 'seed': seed,
                     **scene_scores(c, errors_fn, params, scene)})
  return rows


def summarize(rows: list[dict], shots) -> dict:
  out = {}
  for name in METHODS:
    for k in shots:
      sel = [r for r in rows if r['method'] == name and r['k'] == k]
      out[f'{name}/k{k}'] = {p: metrics.mean_ci([r[p] for r in sel]) for p in POOLINGS}
  return out


def table(summary: dict, shots) -> str:
  def cell(m):
    return f'{m["mean"]:.3f}' + (f' ± {m["ci95"]:.3f}' if m.get('ci95') is not None else '')
  lines = ['| method | ' + ' | '.join(f'K={k} (per-video norm)' for k in shots) + ' | ' +
           ' | '.join(f'K={k} (global)' for k in shots) + ' |',
           '|---' * (1 + 2 * len(shots)) + '|']
  for name in METHODS:
    lines.append(f'| {name} | ' + ' | '.join(
        cell(summary[f'{name}/k{k}']['auroc_per_video_norm']) for k in shots) + ' | ' +
        ' | '.join(cell(summary[f'{name}/k{k}']['auroc']) for k in shots) + ' |')
  return '\n'.join(lines)


def run(c, workdir: str) -> dict:
  _check(c)
  os.makedirs(workdir, exist_ok=True)
  t0 = time.perf_counter()
  train_scenes = _load(c, range(1, c.train_scenes + 1), 0)
  held_out = _load(c, range(scenes.HELD_OUT_FIRST, scenes.HELD_OUT_FIRST + c.held_out_scenes),
                   c.video.num_test)
  model = UNetPredictor(channels=train_scenes[0].train[0].frames.shape[-1],
                        features=tuple(c.model.features), groups=c.model.groups)
  x0 = jnp.zeros((1, c.frames_in, c.image_size, c.image_size, model.channels))
  rows, curves, timings = [], {}, {}
  fns = jitted(c, model)
  for seed in c.seeds:
    init = jax.jit(model.init)(jax.random.PRNGKey(seed), x0)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    meta, curves[f'maml/seed{seed}'] = meta_train(c, fns, init, train_scenes, rng)
    timings[f'meta_train_s/seed{seed}'] = time.perf_counter() - t
    t = time.perf_counter()
    joint, curves[f'pretrained/seed{seed}'] = pretrain(c, fns, init, train_scenes, rng)
    timings[f'pretrain_s/seed{seed}'] = time.perf_counter() - t
    rows += evaluate(c, fns, init, meta, joint, held_out, seed)
  summary = summarize(rows, c.shots)
  report = {'config': json.loads(c.to_json()), 'summary': summary, 'rows': rows,
            'curves': curves, 'timings': {**timings, 'total_s': time.perf_counter() - t0},
            'jax': jax.__version__}
  with open(os.path.join(workdir, 'report.json'), 'w') as f:
    json.dump(report, f, indent=1)
  text = table(summary, c.shots)
  with open(os.path.join(workdir, 'report.md'), 'w') as f:
    f.write(text + '\n')
  frames = [s.train[0].frames[0] for s in train_scenes + held_out]
  plots.image_grid(os.path.join(workdir, 'scenes.png'), frames,
                   'walkway cameras: training scenes, then held-out scenes',
                   columns=min(len(frames), 8),
                   captions=[f'scene {s.scene}' for s in train_scenes + held_out])
  print(text)
  return report


def _steps(c):
  """(JAX step, its lowering, torch step) of one meta-training step (meta_batch tasks of k
  pairs, the config's inner loop and order, Adam outer update) on the same weights and
  tasks; the twin uses torch.func and higher-order autograd."""
  import torch
  from vadjax.bench.twins import TWINS, port
  from vadjax.bench.twins.frame_predictor import meta_loss as torch_meta_loss
  train_scenes = _load(c, range(1, c.maml.meta_batch + 1), 0)
  model = UNetPredictor(channels=1, features=tuple(c.model.features), groups=c.model.groups,
                        conv_impl=maml.conv_impl(c.maml.order))
  v = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, c.frames_in, c.image_size,
                                                            c.image_size, 1)))
  rng = np.random.default_rng(0)
  tasks = scenes.stack([scenes.task(rng, s.train, c.frames_in, c.maml.k) for s in train_scenes])
  tx = optax.adam(c.maml.outer_lr)
  first = c.maml.order == 'first'
  step = maml.make_meta_step(model.apply, tx, c.maml.inner_lr, c.maml.inner_steps, first,
                             c.maml.task_map)
  meta = maml.init_meta(v, c.maml.inner_lr, False)
  state = [meta, jax.jit(tx.init)(meta)]

  def jax_step():
    state[0], state[1], loss = step(state[0], state[1], tasks)
    return loss

  twin = port(TWINS['unet_predictor'](channels=1, frames_in=c.frames_in,
                                      features=tuple(c.model.features),
                                      groups=c.model.groups), v)
  opt = torch.optim.Adam(twin.parameters(), lr=c.maml.outer_lr)
  as_torch = [[(torch.from_numpy(tasks[s]['x'][i]), torch.from_numpy(tasks[s]['y'][i]))
               for s in ('train', 'val')] for i in range(c.maml.meta_batch)]

  def torch_step():
    opt.zero_grad()
    loss = torch_meta_loss(twin, dict(twin.named_parameters()), as_torch, c.maml.inner_lr,
                           c.maml.inner_steps, first)
    loss.backward()
    opt.step()
    return loss
  return jax_step, lambda: step.lower(state[0], state[1], tasks), torch_step


def speed(c, repeats: int) -> dict:
  """`_steps` timed: paired ratios torch / JAX (bench/harness.py)."""
  import torch
  from vadjax.bench import harness
  jax_step, _, torch_step = _steps(c)
  t0 = time.perf_counter()
  jax.block_until_ready(jax_step())
  compile_s = time.perf_counter() - t0
  ratios = harness.paired_ratios((torch_step, lambda x: x), (jax_step, jax.block_until_ready),
                                 repeats)
  jt = harness.time_calls(jax_step, jax.block_until_ready, 2, repeats)
  tt = harness.time_calls(torch_step, lambda x: x, 2, repeats)
  return {'order': c.maml.order, 'task_map': c.maml.task_map, 'meta_batch': c.maml.meta_batch,
          'k': c.maml.k, 'inner_steps': c.maml.inner_steps, 'image_size': c.image_size,
          'jax_compile_s': compile_s, 'jax_median_s': jt.median_s,
          'torch_median_s': tt.median_s, 'paired_torch_over_jax': float(np.median(ratios)),
          'paired_quartiles': [float(np.percentile(ratios, q)) for q in (25, 75)],
          'torch': torch.__version__, 'jax': jax.__version__}


def profile_step(c, steps: int) -> str:
  """`_steps` profiled op by op on both sides (vadjax/bench/profile.py), as markdown."""
  from vadjax.bench import profile
  jax_step, lower, torch_step = _steps(c)
  for _ in range(2):                               # compile and warm both
    jax.block_until_ready(jax_step())
    torch_step()
  ours = profile.profile_jax(jax_step, lower().compile().as_text(), steps)
  return profile.table(ours, profile.profile_torch(torch_step, lambda x: x, steps))


def main(argv):
  start(argv)
  f = flags.FLAGS
  if f.mode == 'speed':
    print(json.dumps(run_or_fail(speed, f.config, f.repeats), indent=1))
  elif f.mode == 'profile':
    print(run_or_fail(profile_step, f.config, f.repeats))
  else:
    run_or_fail(run, f.config, f.workdir)


if __name__ == '__main__':    # flags here: the tests import this module beside other scripts
  config_flags.DEFINE_config_file(
      'config', os.path.join(os.path.dirname(__file__), 'configs', 'maml.py'),
      'The maml config file[:variant].', lock_config=True)
  flags.DEFINE_string('workdir', 'runs/maml', 'Where report.json goes.')
  flags.DEFINE_enum('mode', 'protocol', ['protocol', 'speed', 'profile'], 'protocol: the '
                    'few-shot study; speed: one meta-training step against the PyTorch twin; '
                    'profile: that step op by op on both sides.')
  flags.DEFINE_integer('repeats', 20, 'speed: paired calls timed; profile: calls profiled.')
  app.run(main)
