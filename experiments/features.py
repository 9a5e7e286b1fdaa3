"""Seed 004's feature analysis: t-SNE figures of a feature-prediction workdir.

  python -m experiments.features --workdir=runs/fp_dino [--out=tsne.png] [--max_iter=5000]

The t-SNE figures of the workdir's cached features (every frame of the train, val and test
videos, normal / anomalous; and per video, max-aggregated) with the seed's settings
(perplexity 10, 5000 iterations). The speed of the backbones and the predictor against
PyTorch: `python -m experiments.bench --models=vit_s16,vit_mini,resnet50,feature_predictor`.
"""

import glob
import os

import numpy as np
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
  folders = sorted(glob.glob(os.path.join(workdir, 'cache', f'{category}-*', 'train.npy')),
                   key=os.path.getmtime)
  if not folders:
    raise UserError(f'no cached features of {category!r} in {workdir}/cache; train first')
  folder = os.path.dirname(folders[-1])
  splits = DATASETS.get(config.dataset)(category, config.image_size, config.data)
  feats, labels = [], []
  for split in ('train', 'val', 'test'):           # t-SNE takes every frame at once
    feats.append(np.load(os.path.join(folder, f'{split}.npy'), allow_pickle=False))
    labels += [v.labels for v in getattr(splits, split).videos]
  videos = np.concatenate([np.full(len(lab), i) for i, lab in enumerate(labels)])
  return np.concatenate(feats), np.concatenate(labels), videos


def tsne_figure(workdirs: dict, out: str, max_iter: int = 5000) -> str:
  """One t-SNE panel per {title: feature-prediction workdir}."""
  return plots.tsne(out, {title: tsne.embeddings(*cached_features(w), max_iter=max_iter)
                          for title, w in workdirs.items()})


def main(argv):
  start(argv)
  f = flags.FLAGS
  if not f.workdir:
    raise app.UsageError('--workdir (a feature-prediction workdir) is required')
  out = f.out or os.path.join(f.workdir, 'tsne.png')
  print(run_or_fail(tsne_figure, {os.path.basename(f.workdir.rstrip('/')): f.workdir}, out,
                    f.max_iter))


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'A feature-prediction workdir.')
  flags.DEFINE_string('out', None, 'The figure (default <workdir>/tsne.png).')
  flags.DEFINE_integer('max_iter', 5000, 't-SNE iterations.')
  app.run(main)
