"""The SVDD study of the sweep harness: AUROC against learning rate × epochs of SVDD
fine-tuning (seed 001 §4.8.3, Fig. 4.8).

  python -m experiments.sweep --study=svdd --override='categories=0;3;5;8' --seeds=0,1,2 \
      --lrs=5e-8,5e-7,5e-6,5e-5 --epochs=1,2,5,10,20 --workdir=runs/svdd

Unlike the other studies it trains one set of runs, not one per row: the baseline AE
(BCAE1 of `svdd_cae.py` without the stage) in <workdir>/base (or reused: the runs resume and
are skipped when finished; `--base_workdir` takes runs made elsewhere with the same config),
then fine-tunes each restored run's encoder for max(epochs) epochs at each lr and scores the
test split after every listed epoch count. Writes svdd.json, svdd.md (lr × epochs) and
svdd.png (one curve per lr, mean over seeds; the black dot is the baseline, as in Fig. 4.8).
Expected runtime on a 2-core CPU: ~1 min per (category, seed) for 4 lrs × 20 epochs on digits,
after the base runs.
"""

import json
import os

import matplotlib
import numpy as np
from absl import logging

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments.configs import zoo  # noqa: E402
from vadjax.eval.metrics import auroc, mean_ci  # noqa: E402
from vadjax.methods import svdd  # noqa: E402
from vadjax.train import load_splits, restore, train_and_evaluate  # noqa: E402
from vadjax.train.evaluate import EvalSet, score_split  # noqa: E402
from vadjax.train.experiment import Experiment  # noqa: E402

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
  summary = {'baseline': _over_seeds(runs, lambda r: r['baseline']), 'lrs': {}}
  for lr in lrs:
    summary['lrs'][str(lr)] = [_over_seeds(runs, lambda r, i=i: r['lrs'][str(lr)][i])
                               for i in range(len(epochs))]
  return {'dataset': config.dataset, 'model': config.model, 'categories': config.categories,
          'seeds': list(config.seeds), 'epochs': list(epochs), 'lrs': [str(x) for x in lrs],
          'runs': runs, 'summary': summary}


def _over_seeds(runs, value) -> dict:
  """Mean ± 95% CI over seeds of each seed's mean over categories: as the studies' tables
  (vadjax.eval.report), so the baseline equals the AE's own row."""
  seeds = sorted({r['seed'] for r in runs})
  return mean_ci([np.mean([value(r) for r in runs if r['seed'] == s]) for s in seeds])


def figure(result, path) -> str:
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  epochs = result['epochs']
  for i, lr in enumerate(result['lrs']):
    ax.plot(epochs, [m['mean'] for m in result['summary']['lrs'][lr]], marker='o',
            color=f'C{i}', label=f'lr {float(lr):.0e}')
  ax.scatter([0], [result['summary']['baseline']['mean']], color='black', zorder=5,
             label='baseline (no fine-tuning)')
  ax.set(xlabel='SVDD fine-tuning epochs', ylabel='test AUROC (mean over seeds)',
         title=f'{result["model"]} + SVDD on {result["dataset"]} (seed 001 Fig. 4.8)')
  ax.title.set_fontsize(9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def table(result) -> str:
  """Test AUROC (mean ± 95% CI over seeds) per lr and epoch count, the baseline first."""
  fmt = lambda m: f'{m["mean"]:.4f}' + ('' if m['ci95'] is None else f' ± {m["ci95"]:.4f}')
  lines = ['| lr | ' + ' | '.join(f'{e} epochs' for e in result['epochs']) + ' |',
           '|---' * (1 + len(result['epochs'])) + '|',
           f'| baseline (no fine-tuning) | {fmt(result["summary"]["baseline"])} |'
           + ' |' * (len(result['epochs']) - 1)]
  for lr in result['lrs']:
    lines.append(f'| {float(lr):.0e} | '
                 + ' | '.join(fmt(m) for m in result['summary']['lrs'][lr]) + ' |')
  return '\n'.join(lines)


def run(workdir, seeds, override, lrs, epochs, base_workdir=None) -> dict:
  """The study as `experiments.sweep` runs it: writes svdd.json, .md and .png."""
  config = zoo.make('svdd_cae', override or None)
  config.seeds = tuple(int(s) for s in seeds)
  result = sweep(config, [float(x) for x in lrs], [int(x) for x in epochs], workdir,
                 base_workdir)
  result['table'] = table(result)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'svdd.json'), 'w') as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(workdir, 'svdd.md'), 'w') as f:
    f.write(result['table'] + '\n')
  result['figure'] = figure(result, os.path.join(workdir, 'svdd.png'))
  return result
