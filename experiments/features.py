"""Seed 004's feature analysis and speed.

  python -m experiments.features --mode=tsne --workdir=runs/fp_dino [--out=tsne.png]
  python -m experiments.features --mode=speed [--repeats=20] [--out=speed.json]

tsne: the t-SNE figures of a feature-prediction workdir's cached features (every frame of
the train, val and test videos, normal / anomalous; and per video, max-aggregated) with
the seed's settings (perplexity 10, 5000 iterations).

speed: JAX against the PyTorch references in one process, on the same weights and inputs,
as paired ratios torch / JAX (alternating calls, median and quartiles; > 1: JAX faster):
frames/s of feature extraction (ViT-S/16 at 224², the CPU ViT at 64², ResNet-50 at 128²;
batch 32) and the LSTM predictor's training step (Adam; 9 vectors of 384, batch 32). Each
row records how far the two sides' outputs (extraction) or first losses (training) differ,
so a timing is never of two different computations.
"""

import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from experiments.cli import run_or_fail, start
from vadjax.eval import plots, tsne
from vadjax.registry import UserError


def cached_features(workdir: str, category: str | None = None):
  """(features, labels, video ids) of every frame in a feature-prediction workdir's cache,
  with the frame labels of its dataset."""
  from vadjax.data import DATASETS  # noqa: PLC0415
  from vadjax.train.experiment import load_config  # noqa: PLC0415
  config = load_config(workdir)
  if config.method != 'feature_prediction':
    raise UserError(f'{workdir!r} is a {config.method} experiment, not feature prediction')
  category = category or str(config.categories).split(',')[0]
  files = sorted(glob.glob(os.path.join(workdir, 'cache', f'{category}-*.npz')),
                 key=os.path.getmtime)
  if not files:
    raise UserError(f'no cached features of {category!r} in {workdir}/cache; train first')
  splits = DATASETS.get(config.dataset)(category, config.image_size, config.data)
  feats, labels = [], []
  with np.load(files[-1]) as z:
    for split in ('train', 'val', 'test'):
      for i, v in enumerate(getattr(splits, split).videos):
        feats.append(z[f'{split}_{i}'])
        labels.append(v.labels)
  videos = np.concatenate([np.full(len(lab), i) for i, lab in enumerate(labels)])
  return np.concatenate(feats), np.concatenate(labels), videos


def tsne_figure(workdir: str, out: str, title: str, max_iter: int = 5000) -> str:
  x, labels, videos = cached_features(workdir)
  return plots.tsne(out, {title: tsne.embeddings(x, labels, videos, max_iter=max_iter)})


def _pair(jax_fn, torch_fn, repeats: int) -> dict:
  from vadjax.bench import harness  # noqa: PLC0415
  sync = lambda x: x
  jt = harness.time_calls(jax_fn, jax.block_until_ready, 2, repeats)
  tt = harness.time_calls(torch_fn, sync, 2, repeats)
  r = harness.paired_ratios((torch_fn, sync), (jax_fn, jax.block_until_ready), repeats)
  return {'jax_s': jt.median_s, 'torch_s': tt.median_s, 'jax_compile_s': jt.first_s,
          'paired_torch_over_jax': float(np.median(r)),
          'paired_quartiles': [float(np.percentile(r, q)) for q in (25, 75)]}


REFERENCE_SIDES = {'vit_s16': 224, 'vit_mini': 64, 'resnet50': 128}


def speed(repeats: int, backbones=tuple(REFERENCE_SIDES)) -> dict:
  import torch  # noqa: PLC0415
  from vadjax.bench.twins import backbones as twins  # noqa: PLC0415
  from vadjax.models import checkpoints  # noqa: PLC0415
  torch.set_num_threads(os.cpu_count())
  rows = {}
  refs = {'vit_s16': twins.ViT, 'vit_mini': lambda: twins.ViT(128, 4, 4, 8, 64),
          'resnet50': twins.ResNet}
  for name in backbones:
    make, side = refs[name], REFERENCE_SIDES[name]
    module, variables = checkpoints.init_backbone(name, 3, side)
    twin = make().eval()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                          checkpoints.torch_named(variables).items()}, strict=False)
    x = np.random.default_rng(0).random((32, side, side, 3), np.float32)
    xj, xt = jnp.asarray(x), torch.from_numpy(x)
    key = 'cls' if 'cls' in jax.eval_shape(module.apply, variables, xj) else 'latent'
    fwd = jax.jit(lambda v, x: module.apply(v, x)[key])

    def torch_fwd():
      with torch.no_grad():
        return twin(xt)[key]
    ours, ref = np.asarray(fwd(variables, xj)), torch_fwd().numpy()
    r = _pair(lambda: fwd(variables, xj), torch_fwd, repeats)
    r.update(jax_frames_per_s=32 / r['jax_s'], torch_frames_per_s=32 / r['torch_s'],
             side=side, max_rel_diff=float(np.abs(ours - ref).max() / np.abs(ref).max()))
    rows[f'extract/{name}'] = r
  rows['predictor_train/lstm'] = _predictor_step(repeats)
  return {'rows': rows, 'jax': jax.__version__, 'torch': torch.__version__,
          'cpus': os.cpu_count(), 'backend': jax.default_backend()}


def _predictor_step(repeats: int) -> dict:
  import torch  # noqa: PLC0415
  from vadjax.bench.twins import backbones as twins  # noqa: PLC0415
  from vadjax.models.feature_predictor import FeaturePredictor  # noqa: PLC0415
  d, t, b = 384, 9, 32
  model = FeaturePredictor(channels=d, hidden=256)
  x = np.random.default_rng(0).standard_normal((b, t, 1, 1, d)).astype(np.float32)
  params = model.init(jax.random.key(0), x)['params']
  tx = optax.adam(1e-3)
  state = [params, tx.init(params)]

  @jax.jit
  def step(params, opt, x):
    def loss(p):
      out = model.apply({'params': p}, x)
      return jnp.mean(jnp.square(out['prediction'] - out['target']))
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, value

  xj = jnp.asarray(x)

  def jax_step():
    state[0], state[1], value = step(state[0], state[1], xj)
    return value
  twin = twins.LSTMPredictor(d, 256).load_flax(jax.device_get(params))
  opt = torch.optim.Adam(twin.parameters(), lr=1e-3)
  xt = torch.from_numpy(x)

  def torch_step():
    opt.zero_grad()
    value = torch.mean((twin(xt) - xt[:, 1:, 0, 0]) ** 2)
    value.backward()
    opt.step()
    return value
  first = abs(float(jax_step()) / torch_step().item() - 1)   # the same loss before any step
  return {**_pair(jax_step, torch_step, repeats), 'batch': b, 'clip': t, 'dim': d,
          'first_loss_rel_diff': first}


def table(result: dict) -> str:
  lines = ['| what | JAX (s) | torch (s) | paired torch/JAX (quartiles) | JAX compile (s) |',
           '|---|---|---|---|---|']
  for name, r in result['rows'].items():
    q = r['paired_quartiles']
    lines.append(f'| {name} | {r["jax_s"]:.4f} | {r["torch_s"]:.4f} | '
                 f'{r["paired_torch_over_jax"]:.2f} ({q[0]:.2f}–{q[1]:.2f}) | '
                 f'{r["jax_compile_s"]:.1f} |')
  return '\n'.join(lines)


def main(argv):
  start(argv)
  f = flags.FLAGS
  if f.mode == 'tsne':
    if not f.workdir:
      raise app.UsageError('--mode=tsne needs --workdir')
    out = f.out or os.path.join(f.workdir, 'tsne.png')
    print(run_or_fail(tsne_figure, f.workdir, out, os.path.basename(f.workdir.rstrip('/')),
                      f.max_iter))
    return
  result = run_or_fail(speed, f.repeats)
  print(table(result))
  if f.out:
    with open(f.out, 'w') as fh:
      json.dump(result, fh, indent=1)


if __name__ == '__main__':
  flags.DEFINE_enum('mode', 'speed', ['speed', 'tsne'], 'What to run.')
  flags.DEFINE_string('workdir', None, '(tsne) a feature-prediction workdir.')
  flags.DEFINE_string('out', None, 'The figure (tsne) or the JSON of the timings (speed).')
  flags.DEFINE_integer('repeats', 20, '(speed) timed and paired calls.')
  flags.DEFINE_integer('max_iter', 5000, '(tsne) t-SNE iterations.')
  app.run(main)
