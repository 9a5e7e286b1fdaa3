"""MemAE's robustness to the memory size N (seed 003, "Robustness to the memory size", Fig. 7):
one experiment per N, then AUROC vs N (mean ± 95% CI over seeds) as a figure and a table.

  python -m experiments.memory_size --config='experiments/configs/memae.py:categories=0;3;5;8,seeds=0;1;2' \
      --sizes=10,25,50,100,200,500,1000,2000 --workdir=runs/memory_size

Each N runs in its own sub-workdir (N<n>), so an interrupted sweep resumes where it stopped.
Writes memory_size.json and memory_size.png in --workdir. Expected runtime on a 2-core CPU
(measured 2026-11-22, the command above): 27 min while the test suite shared the cores.
"""

import json
import os

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from vadjax.eval import plots
from vadjax.eval.metrics import mean_ci
from vadjax.train import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A MemAE config file[:variant].')
_SIZES = flags.DEFINE_list('sizes', ['10', '25', '50', '100', '200', '500', '1000', '2000'],
                           'Memory sizes N.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/memory_size', 'Where the runs go.')


def sweep(config, sizes, workdir) -> dict:
  rows = []
  for n in sizes:
    cfg = config.copy_and_resolve_references()
    cfg.model_kwargs.memory_items = n
    report = train_and_evaluate(cfg, os.path.join(workdir, f'N{n}'))
    seeds = sorted({r['seed'] for r in report['runs']})
    per_seed = [float(np.mean([r['image']['auroc'] for r in report['runs'] if r['seed'] == s]))
                for s in seeds]
    rows.append({'memory_items': n, 'auroc': mean_ci(per_seed), 'per_seed': per_seed})
    logging.info('N=%d: mean AUROC %.4f', n, rows[-1]['auroc']['mean'])
  return {'dataset': config.dataset, 'categories': config.categories,
          'seeds': list(config.seeds), 'rows': rows}


def table(result) -> str:
  lines = ['| memory size N | mean AUROC | per seed |', '|---|---|---|']
  for r in result['rows']:
    a = r['auroc']
    ci = '' if a['ci95'] is None else f' ± {a["ci95"]:.4f}'
    seeds = ', '.join(f'{v:.4f}' for v in r['per_seed'])
    lines.append(f'| {r["memory_items"]} | {a["mean"]:.4f}{ci} | {seeds} |')
  return '\n'.join(lines)


def main(argv):
  del argv
  if _CONFIG.value is None:
    raise app.UsageError('give --config=experiments/configs/memae.py[:variant]')
  if not _CONFIG.value.model.startswith('memae') or not _CONFIG.value.model_kwargs.use_memory:
    raise app.UsageError('the config must be a MemAE with memory (memae_2d / memae_3d)')
  sizes = [int(s) for s in _SIZES.value]
  os.makedirs(_WORKDIR.value, exist_ok=True)
  result = sweep(_CONFIG.value, sizes, _WORKDIR.value)
  with open(os.path.join(_WORKDIR.value, 'memory_size.json'), 'w') as f:
    json.dump(result, f, indent=1)
  plots.metric_vs(os.path.join(_WORKDIR.value, 'memory_size.png'),
                  [r['memory_items'] for r in result['rows']],
                  [r['per_seed'] for r in result['rows']],
                  xlabel='memory size N', ylabel='mean AUROC',
                  title=f'MemAE on {result["dataset"]}: robustness to N (seed 003 Fig. 7)')
  print(table(result))


if __name__ == '__main__':
  app.run(main)
