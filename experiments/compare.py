"""The seed 001 Tab. 4.6/4.8-style comparison (and seed 000's): a baseline and its variants
on the same data and seeds, mean ± 95% CI over seeds, one command.

  python -m experiments.compare --suite=seed001 --datasets=digits,textures --seeds=0,1,2 \
      --workdir=runs/compare [--override='num_epochs=30']

Suites (experiments/configs/zoo.py): `seed001` (BCAE1, SE-, AA-, SA-, SSA-CAE, BCAE1 + SSIM
loss, BCAE1 + SVDD), `ks` (BCAE2 vs KS-CAE, MSE and SSIM loss, 128×128), `seed000` (deep AE,
CBAM-AE, LTPA-AE pc / dp, on seed 000's protocol: digits class "1"). Every (variant, dataset) runs in its own sub-workdir, so an
interrupted sweep resumes where it stopped. Writes compare_<suite>.json and .md in --workdir.
Image sizes: digits 32×32, textures 64×64 (BCAE2 / KS-CAE: 128×128 both).
"""

import json
import os

import numpy as np
from absl import app, flags, logging

from experiments.configs import zoo
from vadjax.eval.metrics import mean_ci
from vadjax.train import train_and_evaluate

_SUITE = flags.DEFINE_enum('suite', 'seed001', sorted(zoo.SUITES), 'Which comparison.')
_DATASETS = flags.DEFINE_list('datasets', ['digits', 'textures'], 'Embedded datasets.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds (≥ 3 for a CI).')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/compare', 'Where the runs go.')
_OVERRIDE = flags.DEFINE_string('override', '', 'key=value,... applied to every variant '
                                '(e.g. num_epochs=30 for a shorter sweep).')
_OVERRIDE_TEXTURES = flags.DEFINE_string(
    'override_textures', '', 'key=value,... for the textures runs only (after --override).')
_ONLY = flags.DEFINE_list('only', None, 'Run only these zoo names of the suite.')
_COLLECT = flags.DEFINE_bool('collect_only', False, 'Only gather the report.json of runs '
                              'already in --workdir (no training, no scoring).')
_DIGITS = flags.DEFINE_string('digit_classes', 'all', 'Normal classes of digits ("all" or '
                              'e.g. "0;3;5;8").')

IMAGE_SIZE = {'digits': 32, 'textures': 64}
KEYS = ('auroc', 'aupr', 'eer')


def variant_config(name: str, dataset: str, seeds, override: str, digit_classes='all',
                   override_textures: str = ''):
  if dataset == 'textures' and override_textures:
    override = ','.join(filter(None, [override, override_textures]))
  cfg = zoo.make(name, override or None)
  cfg.dataset = dataset
  if cfg.model not in ('bcae2', 'ks_cae'):
    cfg.image_size = IMAGE_SIZE[dataset]
  if dataset == 'digits' and name not in zoo.SEED000_MODELS:
    cfg.categories = digit_classes    # seed 000's suite keeps its protocol: class "1"
  cfg.seeds = tuple(int(s) for s in seeds)
  cfg.plots = False
  return cfg


def summarize(report) -> dict:
  seeds = sorted({r['seed'] for r in report['runs']})
  out = {}
  for k in KEYS:
    per_seed = [float(np.mean([r['image'][k] for r in report['runs'] if r['seed'] == s]))
                for s in seeds]
    out[k] = {**mean_ci(per_seed), 'per_seed': per_seed}
  for t in report['runs'][0]['thresholds']:         # F1 at each threshold (seed 000's tables)
    out[f'f1@{t}'] = mean_ci([r['thresholds'][t]['f1'] for r in report['runs']
                              if t in r['thresholds']])
  out['train_s'] = report['timings']['train_s']
  out['epochs'] = float(np.mean([r['epochs'] for r in report['runs']]))
  return out


def table(rows, datasets) -> str:
  head = '| model | ' + ' | '.join(f'{d} AUROC | {d} EER' for d in datasets) + ' |'
  lines = [head, '|---' * (1 + 2 * len(datasets)) + '|']
  for row in rows:
    cells = []
    for d in datasets:
      r = row['results'].get(d)
      if r is None:
        cells += ['–', '–']
        continue
      ci = lambda m: '' if m['ci95'] is None else f' ± {m["ci95"]:.4f}'   # noqa: E731
      cells += [f'{r["auroc"]["mean"]:.4f}{ci(r["auroc"])}', f'{r["eer"]["mean"]:.4f}']
    lines.append(f'| {row["label"]} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def run(suite: str, datasets, seeds, workdir: str, override: str = '', only=None,
        digit_classes: str = 'all', override_textures: str = '', collect_only=False) -> dict:
  rows = []
  for label, name in zoo.SUITES[suite]:
    if only and name not in only:
      continue
    row = {'label': label, 'name': name, 'results': {}}
    for dataset in datasets:
      run_dir = os.path.join(workdir, suite, dataset, name)
      if collect_only:
        if not os.path.exists(os.path.join(run_dir, 'report.json')):
          continue
        with open(os.path.join(run_dir, 'report.json')) as f:
          report = json.load(f)
      else:
        cfg = variant_config(name, dataset, seeds, override, digit_classes, override_textures)
        report = train_and_evaluate(cfg, run_dir)
      row['results'][dataset] = summarize(report)
      logging.info('%s on %s: AUROC %.4f', label, dataset,
                   row['results'][dataset]['auroc']['mean'])
    if row['results']:
      rows.append(row)
  result = {'suite': suite, 'datasets': list(datasets), 'seeds': [int(s) for s in seeds],
            'override': override, 'override_textures': override_textures,
            'digit_classes': digit_classes, 'rows': rows, 'table': table(rows, datasets)}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, f'compare_{suite}.json'), 'w') as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(workdir, f'compare_{suite}.md'), 'w') as f:
    f.write(result['table'] + '\n')
  return result


def main(argv):
  del argv
  result = run(_SUITE.value, _DATASETS.value, _SEEDS.value, _WORKDIR.value, _OVERRIDE.value,
               _ONLY.value, _DIGITS.value, _OVERRIDE_TEXTURES.value, _COLLECT.value)
  print(result['table'])


if __name__ == '__main__':
  app.run(main)
