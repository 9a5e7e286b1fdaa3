"""Renders README result tables from experiment workdirs (their report.json).

  python -m experiments.tables --seed000=runs/seed000 --digits=runs/bcae1_digits \
      --textures=runs/bcae1_textures --memae=runs/memae,runs/memae_nonspar,runs/memae_ae \
      --memae_video=runs/memae3d,-,runs/ae3d --memory_size=runs/memory_size

Each table puts our mean ± 95% CI over seeds beside the seed's published number.
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
_MEMORY_SIZE = flags.DEFINE_string('memory_size', None, 'Workdir of experiments.memory_size.')
_ZOO = flags.DEFINE_string('zoo', None, 'Workdir of experiments.compare (compare_<suite>.json).')
_SVDD = flags.DEFINE_list('svdd', None, 'Workdirs of experiments.svdd_sweep: digits, textures.')

# seed 003 Tab. 1 (MNIST mean AUROC) and Tab. 2 (UCSD-Ped2 frame AUROC)
SEED003 = {'MemAE': (0.9751, 0.941), 'MemAE-nonSpar': (0.9725, 0.929), 'AE': (0.9619, 0.917)}

# seed 000 Tab. 4-4 (buffered) and 4-5 (mean), baseline deep AE, MNIST class "1"
SEED000 = {'buffered': (0.9947, 0.9678, 0.9859, 0.9768), 'mean': (0.9656, 1.0, 0.6969, 0.8214)}


# seed 001 Tab. 4.8 (AUROC %, HAM10000 / UCSD Ped2) and Tab. 4.9 (BCAE1 + SVDD, UCSD Ped2)
SEED001_ATTENTION = {'BCAE1': (68.60, 83.85), 'SE-CAE': (69.36, 82.71),
                     'AA-CAE': (68.78, 83.28), 'SA-CAE': (69.10, 86.89),
                     'SSA-CAE': (70.15, 88.06), 'BCAE1 + SVDD': (None, 88.85)}
# seed 001 Tab. 4.6: mean AUROC over HAM10000's anomaly classes ("CAE" = BCAE2)
SEED001_KS = {'BCAE2': 0.72, 'KS-CAE': 0.74, 'BCAE2 (SSIM loss)': 0.74,
              'KS-CAE (SSIM loss)': 0.75}
# seed 000 Tab. 4-4 / 4-5: F1 at the buffered / mean threshold, MNIST class "1"
SEED000_F1 = {'deep AE': (0.9768, 0.8214), 'CBAM-AE': (0.9812, 0.8251),
              'LTPA-AE (pc)': (0.9828, 0.8084)}


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


def _ci(m):
  return f'{m["mean"]:.4f}' + ('' if m.get('ci95') is None else f' ± {m["ci95"]:.4f}')


def zoo_seed001_table(compare, svdd_rows) -> str:
  """BCAE1 and its variants on digits / textures beside seed 001's Tab. 4.8 / 4.9."""
  lines = ['| model | ours: digits AUROC | ours: textures AUROC | seed 001: HAM10000 AUROC % '
           '| seed 001: UCSD Ped2 AUROC % |', '|---|---|---|---|---|']
  rows = [(r['label'], r['results']) for r in compare['rows']] + svdd_rows
  for label, res in rows:
    theirs = SEED001_ATTENTION.get(label, (None, None))
    cells = [_ci(res[d]['auroc']) if d in res else '–' for d in ('digits', 'textures')]
    cells += ['–' if t is None else f'{t:.2f}' for t in theirs]
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def zoo_ks_table(compare) -> str:
  lines = ['| model | ours: textures AUROC | ours: EER | seed 001: HAM10000 mean AUROC |',
           '|---|---|---|---|']
  for r in compare['rows']:
    res = r['results']['textures']
    theirs = SEED001_KS.get(r['label'])
    lines.append(f'| {r["label"]} | {_ci(res["auroc"])} | {res["eer"]["mean"]:.4f} | '
                 f'{"–" if theirs is None else f"{theirs:.2f}"} |')
  return '\n'.join(lines)


def zoo_seed000_table(compare) -> str:
  lines = ['| model | ours: F1 buffered | ours: F1 mean β | ours: AUROC | seed 000: F1 '
           'buffered | seed 000: F1 mean β |', '|---|---|---|---|---|---|']
  for r in compare['rows']:
    res = r['results']['digits']
    theirs = SEED000_F1.get(r['label'], (None, None))
    lines.append(f'| {r["label"]} | {_ci(res["f1@buffered"])} | {_ci(res["f1@mean"])} | '
                 f'{_ci(res["auroc"])} | ' + ' | '.join(
                     '–' if t is None else f'{t:.4f}' for t in theirs) + ' |')
  return '\n'.join(lines)


def svdd_rows(workdirs, lr='5e-07', epochs=10) -> list:
  """'BCAE1 + SVDD' from svdd_sweep results: the fine-tuned BCAE1 runs at (lr, epochs)."""
  res = {}
  for dataset_dir in workdirs:
    with open(os.path.join(dataset_dir, 'svdd_sweep.json')) as f:
      sweep = json.load(f)
    i = sweep['epochs'].index(epochs)
    seeds = sorted({r['seed'] for r in sweep['runs']})
    per_seed = [sum(r['lrs'][lr][i] for r in sweep['runs'] if r['seed'] == s) /
                sum(1 for r in sweep['runs'] if r['seed'] == s) for s in seeds]
    res[sweep['dataset']] = {'auroc': mean_ci(per_seed)}
  return [('BCAE1 + SVDD', res)]


def main(argv):
  del argv
  if _ZOO.value:
    def load(suite):
      path = os.path.join(_ZOO.value, f'compare_{suite}.json')
      if not os.path.exists(path):
        return None
      with open(path) as f:
        return json.load(f)
    if load('seed001'):
      print('### Seed 001 attention CAEs, SSIM loss, SVDD (on BCAE1)\n')
      print(zoo_seed001_table(load('seed001'), svdd_rows(_SVDD.value or [])) + '\n')
    if load('ks'):
      print('### BCAE2 vs KS-CAE\n')
      print(zoo_ks_table(load('ks')) + '\n')
    if load('seed000'):
      print('### Seed 000 attention AEs (digits class "1")\n')
      print(zoo_seed000_table(load('seed000')) + '\n')
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
  if _MEMORY_SIZE.value:
    from experiments.memory_size import table as size_table
    with open(os.path.join(_MEMORY_SIZE.value, 'memory_size.json')) as f:
      print('### MemAE: AUROC vs memory size N\n')
      print(size_table(json.load(f)) + '\n')


if __name__ == '__main__':
  app.run(main)
