"""DINO pretraining of a backbone on a dataset's training frames (seed 004; Caron et al.
2021): `python -m experiments.dino --config=experiments/configs/dino.py --workdir=runs/dino`.

Writes to the workdir: Orbax checkpoints (resumed automatically; an interrupted run saves
before it stops), `metrics.jsonl` and TensorBoard events (loss, learning rate, teacher
temperature and momentum, the collapse monitors), `backbone.npz` (the teacher's backbone,
torch-named: `features.weights` of the feature-prediction config), `report.json`,
`curves.png` and `attention.png` (the teacher's class-token attention on training frames,
one row per head, as the DINO paper's figures).
"""

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.cli import run_or_fail, start
from vadjax.data import DATASETS
from vadjax.data.embedded import labelled_digits
from vadjax.eval import plots
from vadjax.methods import dino
from vadjax.models import BACKBONES, checkpoints
from vadjax.models.vit import ViT
from vadjax.registry import UserError
from vadjax.train import workdir as workdir_lib
from vadjax.train.checkpoint import Checkpointer
from vadjax.train.experiment import chosen_categories
from vadjax.train.logging import RunLogger
from vadjax.train.loop import stop_signals


def batch_at(frames, batch_size: int, seed: int, step: int) -> np.ndarray:
  """The training batch of `step`: epochs of shuffled frames without replacement, a pure
  function of (seed, step), so a resumed run sees the batches it would have seen;
  `frames` is an array or anything indexed by an array of indices."""
  per_epoch = len(frames) // batch_size
  epoch, i = divmod(step, per_epoch)
  order = np.random.default_rng((seed, epoch)).permutation(len(frames))
  return frames[order[i * batch_size:(i + 1) * batch_size]]


def sources(c) -> list[tuple[str, str]]:
  """(dataset, categories) pairs to pretrain on: `dataset` is one name, or several joined
  by '+', each with its categories after ':' (`digits:all+textures:all+walkway:gray`);
  an entry without them takes `categories`."""
  out = []
  for entry in c.dataset.split('+'):
    name, _, cats = entry.partition(':')
    out.append((name.strip(), cats.strip() or c.categories))
  return out


class TrainingFrames:
  """Every training frame (video datasets) or image of the chosen categories of each
  source, as RGB float32, read by index: `frames[indices]` (the prepared frames of hours
  of footage are never held whole)."""

  def __init__(self, c):
    self.parts = []              # per video: its frames; per image split: its records
    for name, categories in sources(c):
      for cat in chosen_categories(name, categories):
        train = DATASETS.get(name)(cat, c.image_size, c.data).train
        self.parts += ([v.frames for v in train.videos] if hasattr(train, 'videos')
                       else [_Images(train)])
    self.first = np.concatenate([[0], np.cumsum([len(p) for p in self.parts])])
    h, w = self._one(0).shape[:2]
    self.shape = (int(self.first[-1]), h, w, 3)
    if len(self) < c.batch_size:
      raise UserError(f'{len(self)} training frames are fewer than batch_size '
                      f'{c.batch_size}')

  def __len__(self) -> int:
    return self.shape[0]

  def _one(self, i: int) -> np.ndarray:
    p = int(np.searchsorted(self.first, i, side='right')) - 1
    x = np.asarray(self.parts[p][i - int(self.first[p])], np.float32)
    return np.broadcast_to(x, x.shape[:2] + (3,)) if x.shape[-1] == 1 else x

  def __getitem__(self, indices) -> np.ndarray:
    return np.stack([self._one(int(i)) for i in np.atleast_1d(indices)])


class _Images:
  """The images of an image split's records, by index."""

  def __init__(self, source):
    self.source = source

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i: int) -> np.ndarray:
    return self.source[i]['image']


class KnnProbe:
  """DINO's k-NN evaluation of the teacher's class token on digits' ten classes: a fixed
  split of scikit-learn's 1,797 digits (2/3 fitted, 1/3 tested), cosine similarity, the 20
  nearest voting with weights exp(sim / 0.07), at the global crops' size. At step 0 it
  measures the ViT at random initialisation, the bar the pretrained features must clear.
  No label is used in pretraining, but when digits are among its sources the probe's
  images are too (as DINO's own k-NN fits on ImageNet's training images)."""

  K, T, BATCH = 20, 0.07, 256

  def __init__(self, model, side: int):
    self.backbone = model.backbone
    images, self.labels = labelled_digits(side)
    n = len(images)              # grey, padded once to whole batches (one program)
    self.grey = np.concatenate([images, np.zeros((-n % self.BATCH,) + images.shape[1:],
                                                 np.float32)])
    order = np.random.default_rng(0).permutation(n)
    self.fit, self.test = order[:2 * n // 3], order[2 * n // 3:]

  def __call__(self, teacher) -> float:
    f = []
    for i in range(0, len(self.grey), self.BATCH):
      x = np.repeat(self.grey[i:i + self.BATCH], 3, axis=-1)
      x = ((x - dino.IMAGENET_MEAN) / dino.IMAGENET_STD).astype(np.float32)
      f.append(np.asarray(_class_tokens(self.backbone, teacher['backbone'], x)))
    f = np.concatenate(f)[:len(self.labels)]
    return knn_accuracy(f, self.labels, self.fit, self.test, self.K, self.T)


@functools.partial(jax.jit, static_argnums=0)
def _class_tokens(backbone, params, x):
  """One compiled program per backbone and batch shape, shared by every probe and run."""
  return backbone.apply({'params': params}, x)['cls']


def knn_accuracy(features, labels, fit, test, k: int, t: float) -> float:
  """Accuracy on rows `test` of a k-NN vote among rows `fit`: cosine similarity s, the
  k nearest each voting for its class with weight exp(s / t)."""
  f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
  sims = f[test] @ f[fit].T
  top = np.argsort(-sims, axis=1)[:, :k]
  votes = np.zeros((len(test), int(labels.max()) + 1))
  np.add.at(votes, (np.arange(len(test))[:, None], labels[fit][top]),
            np.exp(np.take_along_axis(sims, top, 1) / t))
  return float(np.mean(votes.argmax(1) == labels[test]))


def _check(c, s: dino.Settings) -> None:
  for key in ('batch_size', 'steps', 'log_every_steps', 'checkpoint_every_steps'):
    if c[key] <= 0:
      raise UserError(f'{key} must be positive, got {c[key]}')
  module = BACKBONES.get(c.backbone)()
  if not isinstance(module, ViT):
    raise UserError(f'DINO pretrains a ViT (its class token feeds the head); backbone '
                    f'{c.backbone!r} is not one: use one of '
                    f'{", ".join(n for n in BACKBONES.names() if n.startswith("vit"))}')
  patch = module.patch
  if s.global_size % patch or s.local_size % patch:
    raise UserError(f'dino.global_size and dino.local_size must be multiples of the '
                    f'{c.backbone} patch ({patch}); got {s.global_size}, {s.local_size}')


def figures(workdir, model, teacher, frames, history, probes) -> dict:
  """Curves of the loss, the collapse monitors and the k-NN probe; the teacher's
  last-block class-token attention per head on four training frames."""
  paths = {'curves': plots.dino_curves(os.path.join(workdir, 'curves.png'), history, probes)}
  pick = frames[np.linspace(0, len(frames) - 1, 4).astype(int)]
  x = (pick - dino.IMAGENET_MEAN) / dino.IMAGENET_STD
  attn = jax.jit(model.backbone.apply)({'params': teacher['backbone']}, x)['attention']
  patch = model.backbone.patch
  grid = (x.shape[1] // patch, x.shape[2] // patch)
  cls = np.asarray(attn[:, :, 0, 1:]).reshape(len(pick), -1, *grid)
  maps = {f'head {h}': cls[:, h] for h in range(cls.shape[1])}
  paths['attention'] = plots.attention_maps(os.path.join(workdir, 'attention.png'), pick, maps)
  return paths


def run(c, workdir: str) -> dict:
  s = dino.settings_from(c.dino)
  _check(c, s)
  workdir_lib.check_writable(workdir)
  with workdir_lib.lock(workdir):
    return _train(c, s, workdir)


def _train(c, s, workdir):
  t0 = time.perf_counter()
  frames = TrainingFrames(c)
  model = dino.Dino(BACKBONES.get(c.backbone)(channels=3),
                    dino.DinoHead(s.out_dim, s.hidden, s.bottleneck, s.norm_last_layer))
  tx = dino.optimizer(s, c.batch_size, c.steps)
  fp = {'config': json.loads(c.to_json()), 'frames': list(frames.shape)}
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'))
  state = dino.init_state(model, tx, jax.random.PRNGKey(c.seed), s)
  history, spent = [], 0.0          # training seconds of earlier sessions of this run
  probes = []                       # {'step', 'knn_accuracy'}: step 0 is the random ViT
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state, fp)
    history, spent = meta['history'], meta.get('train_seconds', 0.0)
    probes = meta.get('probes', [])
    logging.info('resuming DINO at step %d', int(state.step))
  probe = KnnProbe(model, s.global_size) if c.probe_every_steps else None
  if probe and not probes:
    probes.append({'step': 0, 'knn_accuracy': probe(state.teacher)})
    logging.info('k-NN accuracy of the ViT at random initialisation: %.4f',
                 probes[0]['knn_accuracy'])
  step_fn = dino.make_step(model, tx, s, c.steps)
  start_step = int(state.step)
  log = RunLogger(workdir, 'dino', c.steps, start_step)
  t_start = time.perf_counter()
  save = lambda: ckpt.save(int(state.step), state, {
      'fingerprint': fp, 'history': history, 'probes': probes,
      'train_seconds': spent + time.perf_counter() - t_start})
  try:
    with stop_signals() as signals:
      for step in range(start_step, c.steps):
        state, m = step_fn(state, jnp.asarray(batch_at(frames, c.batch_size, c.seed,
                                                            step)))
        done = step + 1
        if done % c.log_every_steps == 0 or done == c.steps:
          values = {k: float(v) for k, v in jax.device_get(m).items()}
          if not np.isfinite(values['loss']):
            raise UserError(f'DINO loss is {values["loss"]} at step {done}; lower '
                            'dino.base_lr or raise dino.clip_grad')
          history.append({'step': done, **values})
          log.write(done, values)
          log.progress(done, 0, values)
        if probe and (done % c.probe_every_steps == 0 or done == c.steps):
          probes.append({'step': done, 'knn_accuracy': probe(state.teacher)})
          logging.info('step %d: k-NN accuracy %.4f', done, probes[-1]['knn_accuracy'])
        if done % c.checkpoint_every_steps == 0 and done < c.steps:
          save()
        if signals:
          save()
          ckpt.wait()
          raise UserError(f'interrupted at step {done}; checkpoint saved, run again to resume')
    if ckpt.latest_step() != c.steps:
      save()
    spent += time.perf_counter() - t_start
    ckpt.wait()
  finally:
    ckpt.close()
    log.close()
  teacher = jax.device_get(state.teacher)
  checkpoints.save_npz(os.path.join(workdir, 'backbone.npz'),
                       checkpoints.torch_named({'params': teacher['backbone']}))
  last = history[-1]
  report = {'backbone': c.backbone, 'frames': len(frames), 'steps': c.steps,
            'final': last, 'max_entropy_nats': float(np.log(s.out_dim)),
            'collapse': dino.collapse(last, s.out_dim),
            'knn': {'random_init': probes[0]['knn_accuracy'],
                    'final': probes[-1]['knn_accuracy'], 'curve': probes} if probes else None,
            'train_seconds': spent, 'seconds': time.perf_counter() - t0,
            'jax': jax.__version__,
            'figures': figures(workdir, model, teacher, frames, history, probes)}
  with open(os.path.join(workdir, 'report.json'), 'w') as f:
    json.dump(report, f, indent=1)
  if report['collapse']:
    logging.warning('DINO collapsed (%s; final monitors %s); see %s/curves.png',
                    ', '.join(report['collapse']), last, workdir)
  print(json.dumps({k: report[k] for k in ('backbone', 'frames', 'steps', 'final',
                                            'collapse', 'train_seconds')}
                   | {'knn': report['knn'] and {k: report['knn'][k]
                                                for k in ('random_init', 'final')}}, indent=1))
  return report


def main(argv):
  start(argv)
  run_or_fail(run, flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == '__main__':
  config_flags.DEFINE_config_file(
      'config', os.path.join(os.path.dirname(__file__), 'configs', 'dino.py'),
      'The DINO config file[:variant].', lock_config=True)
  flags.DEFINE_string('workdir', 'runs/dino', 'Checkpoints, backbone.npz, report, figures.')
  app.run(main)
