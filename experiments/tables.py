"""Renders README result tables from experiment workdirs (their report.json).

  python -m experiments.tables --seed000=runs/seed000 --digits=runs/bcae1_digits \
      --textures=runs/bcae1_textures --memae=runs/memae,runs/memae_nonspar,runs/memae_ae \
      --memae_video=runs/memae3d,-,runs/ae3d

Each table puts our mean ± 95% CI over seeds beside the seed's published number. The
comparison studies (image zoo, video, seed 002, memory size) make their own tables:
experiments/sweep.py.
"""

import json
import os

from absl import app, flags

from vadjax.eval.metrics import mean_ci

_SEED000 = flags.DEFINE_string('seed000', None, 'Workdir of experiments/configs/seed000.py.')
_DIGITS = flags.DEFINE_string('digits', None, 'Workdir of BCAE1 on digits, all classes.')
_TEXTURES = flags.DEFINE_string('textures', None, 'Workdir of BCAE1 on textures.')
_MEMAE = flags.DEFINE_list('memae', None, 'Workdirs of memae.py on digits: MemAE, '
                           'MemAE-nonSpar, AE (in that order).')
_MEMAE_VIDEO = flags.DEFINE_list('memae_video', None, 'Workdirs of memae.py:video on '
                                 'moving_digits: MemAE, MemAE-nonSpar, AE (any may be "-").')

# seed 003 Tab. 1 (MNIST mean AUROC) and Tab. 2 (UCSD-Ped2 frame AUROC)
SEED003 = {'MemAE': (0.9751, 0.941), 'MemAE-nonSpar': (0.9725, 0.929), 'AE': (0.9619, 0.917)}

# seed 000 Tab. 4-4 (buffered) and 4-5 (mean), baseline deep AE, MNIST class "1"
SEED000 = {'buffered': (0.9947, 0.9678, 0.9859, 0.9768), 'mean': (0.9656, 1.0, 0.6969, 0.8214)}


def _load(workdir):
  with open(os.path.join(workdir, 'report.json')) as f:
    return json.load(f)


def _fmt(values):
  m = mean_ci(values)
  return f'{m["mean"]:.4f}' + ('' if m['ci95'] is None else f' ± {m["ci95"]:.4f}')


def seed000_table(report) -> str:
  keys = ('accuracy', 'precision', 'recall', 'f1')
  lines = ['| threshold | | accuracy | precision | recall | F1 |', '|---|---|---|---|---|---|']
  for t, label in (('buffered', 'buffered (Tab. 4-4)'), ('mean', 'plain mean β (Tab. 4-5)')):
    ours = [_fmt([r['thresholds'][t][k] for r in report['runs']]) for k in keys]
    lines.append(f'| {label} | seed 000, MNIST | ' + ' | '.join(f'{v:.4f}' for v in SEED000[t])
                 + ' |')
    lines.append(f'| | ours, digits ({len(report["runs"])} seeds) | ' + ' | '.join(ours) + ' |')
  auroc = _fmt([r['image']['auroc'] for r in report['runs']])
  return '\n'.join(lines) + f'\n\nImage AUROC (ours): {auroc}.'


def category_table(report, pixel: bool) -> str:
  cats = list(report['per_category'])
  cols = ['auroc', 'aupr', 'eer'] + (['pixel_auroc'] if pixel else [])
  lines = ['| category | ' + ' | '.join(cols) + ' |', '|---' * (len(cols) + 1) + '|']
  for c in cats:
    rs = [r for r in report['runs'] if r['category'] == c]
    lines.append(f'| {c} | ' + ' | '.join(_fmt([r['image'][k] for r in rs]) for k in cols)
                 + ' |')
  mean = report['mean']
  lines.append('| **mean** | ' + ' | '.join(
      f'{mean[k]["mean"]:.4f}' + ('' if mean[k]['ci95'] is None else f' ± {mean[k]["ci95"]:.4f}')
      for k in cols) + ' |')
  return '\n'.join(lines)


def memae_table(workdirs, video: bool) -> str:
  keys = (['auroc_per_video_norm', 'auroc', 'auroc_mean_per_video', 'eer_per_video_norm']
          if video else ['auroc', 'aupr', 'eer'])
  theirs = 'seed 003, UCSD-Ped2' if video else 'seed 003, MNIST'
  lines = [f'| model | {theirs} | ' + ' | '.join(f'ours: {k}' for k in keys) + ' |',
           '|---' * (len(keys) + 2) + '|']
  for name, wd in zip(SEED003, workdirs):
    if wd == '-':
      continue
    mean = _load(wd)['mean']
    ours = [f'{mean[k]["mean"]:.4f}' + ('' if mean[k]['ci95'] is None
                                        else f' ± {mean[k]["ci95"]:.4f}') for k in keys]
    lines.append(f'| {name} | {SEED003[name][int(video)]:.4f} | ' + ' | '.join(ours) + ' |')
  return '\n'.join(lines)


def kinds_table(workdirs) -> str:
  """Frame AUROC per anomaly kind (normal frames + the frames of one kind), per model."""
  rows = [(n, _load(wd)) for n, wd in zip(SEED003, workdirs) if wd != '-']
  kinds = list(rows[0][1]['runs'][0]['per_kind_auroc'])
  lines = ['| model | ' + ' | '.join(kinds) + ' |', '|---' * (len(kinds) + 1) + '|']
  for name, rep in rows:
    lines.append(f'| {name} | ' + ' | '.join(
        _fmt([r['per_kind_auroc'][k] for r in rep['runs']]) for k in kinds) + ' |')
  return '\n'.join(lines)


def main(argv):
  del argv
  if _SEED000.value:
    print('### Seed 000 protocol (deep AE, normal class "1", normal = positive class)\n')
    print(seed000_table(_load(_SEED000.value)) + '\n')
  if _DIGITS.value:
    print('### BCAE1, one-class digits (normal class per row)\n')
    print(category_table(_load(_DIGITS.value), pixel=False) + '\n')
  if _TEXTURES.value:
    print('### BCAE1, textures (image- and pixel-level)\n')
    print(category_table(_load(_TEXTURES.value), pixel=True) + '\n')
  if _MEMAE.value:
    print('### MemAE, one-class digits: mean AUROC over the 10 classes\n')
    print(memae_table(_MEMAE.value, video=False) + '\n')
  if _MEMAE_VIDEO.value:
    print('### MemAE-3D, moving_digits video: frame-level metrics\n')
    print(memae_table(_MEMAE_VIDEO.value, video=True) + '\n')
    print('Frame AUROC per anomaly kind (global pooling):\n')
    print(kinds_table(_MEMAE_VIDEO.value) + '\n')


if __name__ == '__main__':
  app.run(main)
