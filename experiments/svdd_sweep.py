"""SVDD fine-tuning: AUROC against learning rate × epochs (seed 001 §4.8.3, Fig. 4.8).

  python -m experiments.svdd_sweep \
      --config='experiments/configs/svdd_cae.py:categories=0;3;5;8,seeds=0;1;2' \
      --lrs=5e-8,5e-7,5e-6,5e-5 --epochs=1,2,5,10,20 --workdir=runs/svdd_sweep

Trains (or reuses: the base runs resume and skip when finished) the baseline AE of the config
in <workdir>/base, then fine-tunes each run's encoder for max(epochs) epochs at each lr and
scores the test split after every listed epoch count. Writes svdd_sweep.json and
svdd_sweep.png (one curve per lr, mean over runs; the black dot is the baseline before
fine-tuning, as in Fig. 4.8). --base_workdir reuses runs made elsewhere (e.g. the comparison
sweep's BCAE1 runs, same config).
Expected runtime on a 2-core CPU: ~1 min per (category, seed) for 4 lrs × 20 epochs on digits,
after the base runs.
"""

import json
import os

import matplotlib
from absl import app, flags, logging
from ml_collections import config_flags

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from vadjax.eval.metrics import auroc, mean_ci  # noqa: E402
from vadjax.methods import svdd  # noqa: E402
from vadjax.train import load_splits, restore, train_and_evaluate  # noqa: E402
from vadjax.train.evaluate import EvalSet, score_split  # noqa: E402
from vadjax.train.experiment import Experiment  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'The baseline AE config.')
_LRS = flags.DEFINE_list('lrs', ['5e-8', '5e-7', '5e-6', '5e-5'], 'Fine-tuning lrs.')
_EPOCHS = flags.DEFINE_list('epochs', ['1', '2', '5', '10', '20'], 'Epoch counts scored.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/svdd_sweep', 'Where results go.')
_BASE = flags.DEFINE_string('base_workdir', None, 'Baseline runs (default <workdir>/base).')


def _test_auroc(run, test, params) -> float:
  """The test AUROC of a trained run with other (fine-tuned) parameters."""
  state = run.state.replace(params=params)
  scores = score_split(run.steps, state, test.source, run.mesh, run.config.eval_batch_size)
  return auroc(test.labels != 0, scores['score'])


def sweep(config, lrs, epochs, workdir, base_workdir=None) -> dict:
  config.svdd.epochs = 0
  base_workdir = base_workdir or os.path.join(workdir, 'base')
  train_and_evaluate(config, base_workdir, mode='train')
  runs = []
  for cat in Experiment(config).categories():
    splits = load_splits(config, cat)
    test = EvalSet.from_splits(splits)
    for seed in config.seeds:
      run = restore(base_workdir, cat, seed, config)
      record = {'category': cat, 'seed': seed, 'lrs': {},
                'baseline': _test_auroc(run, test, run.state.params)}
      for lr in lrs:
        scored = {}

        def on_epoch(epoch, variables, scored=scored, run=run):
          if epoch in epochs:
            scored[epoch] = _test_auroc(run, test, variables['params'])
        settings = {**config.svdd.to_dict(), 'epochs': max(epochs), 'learning_rate': lr}
        svdd.finetune(run.model, run.variables, splits.train, batch_size=config.batch_size,
                      seed=seed, mesh=run.mesh, on_epoch=on_epoch, **settings)
        record['lrs'][str(lr)] = [scored[e] for e in epochs]
      logging.info('[%s/seed%d] baseline %.4f, after %d epochs: %s', cat, seed,
                   record['baseline'], max(epochs),
                   {lr: round(v[-1], 4) for lr, v in record['lrs'].items()})
      runs.append(record)
  summary = {'baseline': mean_ci([r['baseline'] for r in runs]), 'lrs': {}}
  for lr in lrs:
    summary['lrs'][str(lr)] = [mean_ci([r['lrs'][str(lr)][i] for r in runs])
                               for i in range(len(epochs))]
  return {'dataset': config.dataset, 'model': config.model, 'categories': config.categories,
          'seeds': list(config.seeds), 'epochs': list(epochs), 'lrs': [str(x) for x in lrs],
          'runs': runs, 'summary': summary}


def figure(result, path) -> str:
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  epochs = result['epochs']
  for i, lr in enumerate(result['lrs']):
    ax.plot(epochs, [m['mean'] for m in result['summary']['lrs'][lr]], marker='o',
            color=f'C{i}', label=f'lr {float(lr):.0e}')
  ax.scatter([0], [result['summary']['baseline']['mean']], color='black', zorder=5,
             label='baseline (no fine-tuning)')
  ax.set(xlabel='SVDD fine-tuning epochs', ylabel='test AUROC (mean over runs)',
         title=f'{result["model"]} + SVDD on {result["dataset"]} (seed 001 Fig. 4.8)')
  ax.title.set_fontsize(9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def main(argv):
  del argv
  config = _CONFIG.value
  config.unlock()
  result = sweep(config, [float(x) for x in _LRS.value], [int(x) for x in _EPOCHS.value],
                 _WORKDIR.value, _BASE.value)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  with open(os.path.join(_WORKDIR.value, 'svdd_sweep.json'), 'w') as f:
    json.dump(result, f, indent=1)
  print(figure(result, os.path.join(_WORKDIR.value, 'svdd_sweep.png')))
  print(json.dumps(result['summary'], indent=1))


if __name__ == '__main__':
  app.run(main)
