"""Seed 002's experiments on the embedded data: ALPS (Tab. 3.1) with its ablation (Tab. 3.3:
vanilla AE, AE + random latent noise, ALPS; same data and seeds), ADACL (Tab. 4.1) on
one-class `digits`, ADACL on `textures`, and ADACL's ablations (Tab. 4.4, Figs. 4.7–4.10).
Every row: all categories, mean AUROC over them per seed, mean ± 95% CI over seeds, beside
the thesis' number (MNIST / CIFAR-10; our data are named in the table).

  python -m experiments.seed002 --workdir=runs/seed002 --seeds=0,1,2 [--only=alps,adacl]
      [--ablation_seeds=0]

Each row runs in its own workdir (resumable: finished runs are skipped). Rows named in
--only run with --seeds; the ablation rows (ADACL_ABLATIONS) with --ablation_seeds.
Writes seed002.json and seed002.md (the summary and the per-class tables) in --workdir.
"""

import json
import os

from absl import app, flags, logging

from experiments.configs import adacl, alps
from vadjax.train import train_and_evaluate

# (key, label, config module, variant, data, the thesis' mean AUROC % (source))
MAIN = [
    ('alps', 'ALPS', alps, '', 'digits', (97.65, 'Tab. 3.1, MNIST')),
    ('ae_noise', 'AE + random latent noise', alps, 'noise', 'digits',
     (95.95, 'Tab. 3.3, MNIST')),
    ('ae', 'Vanilla AE', alps, 'vanilla', 'digits', (95.42, 'Tab. 3.3, MNIST')),
    ('adacl', 'ADACL', adacl, '', 'digits', (98.01, 'Tab. 4.1, MNIST')),
    ('adacl_textures', 'ADACL', adacl, 'textures', 'textures', None),
]
ADACL_ABLATIONS = [
    ('adacl_bce', 'ADACL, BCE loss', adacl, 'bce', 'digits', None),
    ('adacl_discrete', 'ADACL, discrete labels', adacl, 'discrete', 'digits', None),
    ('adacl_cutpaste', 'ADACL, cut-paste only', adacl, 'cutpaste', 'digits', None),
    ('adacl_puzzle', 'ADACL, puzzling only', adacl, 'puzzle', 'digits', None),
    ('adacl_rotate', 'ADACL, rotation only', adacl, 'rotate', 'digits', None),
    ('adacl_mixup', 'ADACL, mix-up only', adacl, 'mixup', 'digits', None),
    ('adacl_narrow', 'ADACL, [0, 0.1] – [0.9, 1]', adacl, 'narrow', 'digits',
     (97.14, 'Tab. 4.4, MNIST')),
    ('adacl_mid', 'ADACL, [0, 0.2] – [0.8, 1]', adacl, 'mid', 'digits',
     (96.93, 'Tab. 4.4, MNIST')),
]
# Tab. 3.1 / 4.1 per MNIST class, for the per-class table
PER_CLASS = {'alps': [99.68, 99.92, 94.09, 96.19, 98.31, 97.25, 99.64, 97.25, 95.56, 98.65],
             'adacl': [99.37, 99.30, 98.58, 97.36, 97.57, 98.43, 99.56, 98.09, 93.46, 98.38]}

_WORKDIR = flags.DEFINE_string('workdir', 'runs/seed002', 'Where the runs go.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of the main rows (≥ 3 for a CI).')
_ABLATION_SEEDS = flags.DEFINE_list('ablation_seeds', ['0'], 'Seeds of the ADACL ablations '
                                    '(empty: skip them).')
_ONLY = flags.DEFINE_list('only', None, 'Row keys to run (default: all).')
_OVERRIDE = flags.DEFINE_string('override', '', 'key=value,... for every row.')


def run_row(row, workdir, seeds, override='') -> dict:
  key, label, module, variant, data, ref = row
  cfg = module.get_config(','.join(filter(None, [variant, override])))
  cfg.seeds = tuple(int(s) for s in seeds)
  report = train_and_evaluate(cfg, os.path.join(workdir, key))
  per_cat = {c: m['auroc'] for c, m in report['per_category'].items()}
  out = {'key': key, 'label': label, 'data': data, 'variant': variant, 'seeds': list(cfg.seeds),
         'auroc': report['mean']['auroc'], 'per_category': per_cat, 'reference': ref,
         'train_s': report['timings']['train_s']}
  for k in ('auroc_clean', 'auroc_perturbed', 'auroc_mean', 'auroc_raw'):
    if k in report['mean']:
      out[k] = report['mean'][k]
  logging.info('%s: mean AUROC %.4f', label, out['auroc']['mean'])
  return out


def _pct(m) -> str:
  if m is None:
    return '–'
  ci = '' if m['ci95'] is None else f' ± {100 * m["ci95"]:.2f}'
  return f'{100 * m["mean"]:.2f}{ci}'


def table(rows) -> str:
  lines = ['| Method | our data | seeds | mean AUROC % (± 95% CI) | ALPS scores clean / '
           'perturbed / mean | seed 002 (their data) |', '|---' * 6 + '|']
  for r in rows:
    alps_scores = ' / '.join(_pct(r.get(k)) for k in ('auroc_clean', 'auroc_perturbed',
                                                       'auroc_mean')) \
        if 'auroc_clean' in r else '–'
    ref = '–' if r['reference'] is None else f'{r["reference"][0]:.2f} ({r["reference"][1]})'
    lines.append(f'| {r["label"]} | {r["data"]} | {len(r["seeds"])} | {_pct(r["auroc"])} | '
                 f'{alps_scores} | {ref} |')
  return '\n'.join(lines)


def per_class_table(rows) -> str:
  chosen = [r for r in rows if r['key'] in PER_CLASS]
  if not chosen:
    return ''
  lines = ['| class | ' + ' | '.join(f'{r["label"]} (digits) | seed 002 (MNIST)'
                                      for r in chosen) + ' |', '|---' * (1 + 2 * len(chosen))
           + '|']
  for c in range(10):
    cells = []
    for r in chosen:
      cells += [_pct(r['per_category'].get(str(c))), f'{PER_CLASS[r["key"]][c]:.2f}']
    lines.append(f'| {c} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def run(workdir, seeds, ablation_seeds, only=None, override='') -> dict:
  rows = []
  plan = [(r, seeds) for r in MAIN] + [(r, ablation_seeds) for r in ADACL_ABLATIONS
                                       if ablation_seeds]
  for row, row_seeds in plan:
    if only and row[0] not in only:
      continue
    rows.append(run_row(row, workdir, row_seeds, override))
    _write(workdir, rows)      # after every row: a cut-short sweep keeps what it has
  return _write(workdir, rows)


def _write(workdir, rows) -> dict:
  result = {'rows': rows, 'table': table(rows), 'per_class': per_class_table(rows)}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'seed002.json'), 'w') as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(workdir, 'seed002.md'), 'w') as f:
    f.write(result['table'] + '\n\n' + result['per_class'] + '\n')
  return result


def main(argv):
  del argv
  result = run(_WORKDIR.value, _SEEDS.value, [s for s in _ABLATION_SEEDS.value if s],
               _ONLY.value, _OVERRIDE.value)
  print(result['table'])
  print(result['per_class'])


if __name__ == '__main__':
  app.run(main)
