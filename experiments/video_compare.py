"""Seed 001 §4.9 on the embedded `walkway` scene: the per-frame BCAE1 baseline against the
nine conv recurrent architectures at one (L_R, DUT) setting, and the L_R sweep of CGRU AE,
mean ± 95% CI over seeds, in the layout of seed 001 Tab. 4.13 beside its UCSD Ped2 numbers.

  python -m experiments.video_compare --workdir=runs/video_compare --seeds=0,1,2 \
      [--preset=cpu] [--override=num_epochs=6] [--only=cgru_ae,seq2seq_cgru]

Every (row, seed) runs in its own sub-workdir, seed-major, so an interrupted sweep resumes
where it stopped and a cut-short one still has every row.
Writes video_compare.json and .md in --workdir. Columns: frame-level AUROC / EER with the
per-video normalisation (pooling (a) of METHODS.md §0), seed 001's Savitzky–Golay
regularity AUROC, and the per-kind AUROCs (appearance: object; motion: fast, wrong way,
loiter) with their motion mean. `--preset=cpu` (default) is the 2-core CPU size (64×64,
a quarter of the filters, strides 1, 2, 4; experiments/configs/conv_rnn.py): ~2–5 min per
run, ~2 h for the 36 runs of the default rows.
"""

import json
import os

import numpy as np
from absl import app, flags, logging

from experiments.configs import conv_rnn
from vadjax.eval.metrics import mean_ci
from vadjax.train import train_and_evaluate

# (row label, config variant, seed 001 Tab. 4.13 UCSD2 (AUROC, EER) of that row)
ROWS = [
    ('BCAE1 (per frame)', 'bcae1', (0.838, 0.265)),      # Tab. 4.11's 2D CAE
    ('CRNN(2,N)', 'model=crnn_ae', (0.83, 0.22)),
    ('CLSTM(2,N)', 'model=clstm_ae', (0.85, 0.22)),
    ('CGRU(1,N)', 'model=cgru_ae,model_kwargs.recurrent_layers=1', (0.81, 0.25)),
    ('CGRU(2,N)', 'model=cgru_ae', (0.86, 0.22)),
    ('CGRU(3,N)', 'model=cgru_ae,model_kwargs.recurrent_layers=3', (0.85, 0.23)),
    ('BiCRNN(2,N)', 'model=bicrnn_ae', (0.78, 0.32)),
    ('BiCLSTM(2,N)', 'model=biclstm_ae', (0.70, 0.31)),
    ('BiCGRU(2,N)', 'model=bicgru_ae', (0.85, 0.21)),
    ('Seq2Seq CRNN(2,N)', 'model=seq2seq_crnn', (0.82, 0.27)),
    ('Seq2Seq CLSTM(2,N)', 'model=seq2seq_clstm', (0.83, 0.25)),
    ('Seq2Seq CGRU(2,N)', 'model=seq2seq_cgru', (0.86, 0.20))]
MOTION = ('fast', 'wrong_way', 'loiter')

_WORKDIR = flags.DEFINE_string('workdir', 'runs/video_compare', 'Where the runs go.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds (≥ 3 for a CI).')
_PRESET = flags.DEFINE_string('preset', 'cpu', 'Config presets for every row ("" = the '
                              'full 128×128 size).')
_OVERRIDE = flags.DEFINE_string('override', '', 'key=value,... for every row.')
_ONLY = flags.DEFINE_list('only', None, 'Run only the rows whose variant mentions these '
                          '(e.g. bcae1,seq2seq_cgru).')
_COLLECT = flags.DEFINE_bool('collect_only', False, 'Only gather finished runs.')


def summarize(report) -> dict:
  runs = report['runs']
  out = {k: mean_ci([r['image'][k] for r in runs])
         for k in ('auroc_per_video_norm', 'eer_per_video_norm', 'auroc_regularity')}
  kinds = runs[0]['per_kind_auroc_per_video_norm']
  for k in kinds:
    out[k] = mean_ci([r['per_kind_auroc_per_video_norm'][k] for r in runs])
  out['motion'] = mean_ci([np.mean([r['per_kind_auroc_per_video_norm'][k] for k in MOTION])
                           for r in runs])
  out['train_s'] = report['timings']['train_s']
  out['seeds'] = len(runs)
  return out


def _fmt(m) -> str:
  return f'{m["mean"]:.3f}' + ('' if m['ci95'] is None else f' ± {m["ci95"]:.3f}')


def table(rows) -> str:
  lines = ['| Model (L_R, DUT) | seeds | walkway AUROC | EER | AUROC s(t) | object | fast '
           '| wrong way | loiter | motion mean | seed 001 UCSD2 AUROC / EER |', '|---' * 11 + '|']
  for row in rows:
    r, ref = row['result'], row['ucsd2']
    lines.append(f'| {row["label"]} | {r["seeds"]} | ' + ' | '.join(_fmt(r[k]) for k in (
        'auroc_per_video_norm', 'eer_per_video_norm', 'auroc_regularity', 'object', *MOTION,
        'motion')) + f' | {"–" if ref is None else f"{ref[0]:.2f} / {ref[1]:.2f}"} |')
  return '\n'.join(lines)


def _run_dir(workdir, label, seed):
  name = label.replace(' ', '_').replace('(', '').replace(')', '').replace(',', '')
  return os.path.join(workdir, name, f'seed{seed}')


def run(workdir, seeds, preset='cpu', override='', only=None, collect_only=False) -> dict:
  """Seed-major: every row with the first seed, then the next seed, so a sweep cut short
  still has every row."""
  rows = [(label, variant, ucsd2) for label, variant, ucsd2 in ROWS
          if not only or any(o in variant for o in only)]
  reports = {label: [] for label, _, _ in rows}
  for seed in seeds:
    for label, variant, _ in rows:
      run_dir = _run_dir(workdir, label, seed)
      if collect_only:
        if not os.path.exists(os.path.join(run_dir, 'report.json')):
          continue
        with open(os.path.join(run_dir, 'report.json')) as f:
          reports[label].append(json.load(f))
        continue
      cfg = conv_rnn.get_config(','.join(filter(None, [variant, preset, override])))
      cfg.seeds, cfg.plots = (int(seed),), True
      reports[label].append(train_and_evaluate(cfg, run_dir))
      logging.info('%s seed %s: AUROC %.4f', label, seed,
                   reports[label][-1]['runs'][0]['image']['auroc_per_video_norm'])
  out_rows = []
  for label, variant, ucsd2 in rows:
    if reports[label]:
      merged = {'runs': [r for rep in reports[label] for r in rep['runs']],
                'timings': {'train_s': sum(rep['timings']['train_s'] for rep in reports[label])}}
      out_rows.append({'label': label, 'variant': variant, 'ucsd2': ucsd2,
                       'result': summarize(merged)})
  result = {'seeds': [int(s) for s in seeds], 'preset': preset, 'override': override,
            'rows': out_rows, 'table': table(out_rows)}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'video_compare.json'), 'w') as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(workdir, 'video_compare.md'), 'w') as f:
    f.write(result['table'] + '\n')
  return result


def main(argv):
  del argv
  result = run(_WORKDIR.value, _SEEDS.value, _PRESET.value, _OVERRIDE.value, _ONLY.value,
               _COLLECT.value)
  print(result['table'])


if __name__ == '__main__':
  app.run(main)
