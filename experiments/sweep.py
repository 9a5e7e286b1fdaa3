"""Every comparison study as a list of rows: one harness, one table writer.

  python -m experiments.sweep --study=NAME --workdir=runs/NAME --seeds=0,1,2 \
      [--override=num_epochs=4] [--only=LABEL,PATTERN*,...] [--data=digits] [--collect_only]
      [--rescore_from=DIR --override=reconstruction.score_window=0]

A row is (label, config, variant, the seed's number for it). Each row trains in its own
sub-workdir with every seed (`train_and_evaluate`: an interrupted sweep resumes where it
stopped, a finished row is not run again, and adding seeds later trains only the new ones:
run `--seeds=0` first for a quick look at every row, then `--seeds=0,1,2`). The table reads
each row's `report['mean']` (mean ± 95% CI over seeds); nothing is recomputed here but the
derived columns a study names (the motion mean of three per-kind AUROCs, from the same
per-seed values). Writes <study>.json and <study>.md in --workdir. `--rescore_from` scores
another sweep's trained rows again with changed score settings (vadjax.train.rescore).

Studies (runtimes on a 2-core CPU, 3 seeds):
  seed001, ks, seed000   the image zoo against its baselines on digits and textures (seed 001
                         Tab. 4.6/4.8, seed 000 Tab. 4-4); ~1–2 h each
  video                  seed 001 §4.9 on walkway: BCAE1 per frame against the conv recurrent
                         AEs (Tab. 4.13); `--preset=cpu` by default, ~2 h
  seed002, seed002_ablations   ALPS and ADACL (Tabs. 3.1, 3.3, 4.1, 4.4); ~1 h
  memory_size            MemAE's AUROC against the memory size N (seed 003 Fig. 7), with a
                         figure; ~30 min with --override='categories=0;3;5;8'
  svdd                   SVDD fine-tuning, AUROC against lr × epochs (seed 001 Fig. 4.8;
                         experiments/svdd_sweep.py)
  seed004                frozen features + next-feature predictors on walkway (docs/features.md):
                         our DINO ViT (pretrained first, <workdir>/dino), the same ViT random,
                         ResNet-50 random; LSTM and Transformer; ~40 min with 5 seeds
"""

import dataclasses
import fnmatch
import functools
import json
import os
import pathlib
from typing import Callable

import numpy as np
from absl import app, flags, logging

from experiments import cli, svdd_sweep
from experiments.configs import adacl, alps, conv_rnn, dino, feature_prediction, memae, zoo
from experiments.configs.base import apply_variant
from vadjax.eval import plots
from vadjax.eval.metrics import mean_ci
from vadjax.registry import UserError
from vadjax.train import train_and_evaluate
from vadjax.train.experiment import load_config
from vadjax.train.rescore import rescore


@dataclasses.dataclass(frozen=True)
class Row:
  label: str
  make: Callable            # variant string → config
  variant: str = ''
  reference: str = '–'      # the seed's number(s) for this row (on its own data)
  data: str = ''            # what the row runs on, for the table


@dataclasses.dataclass(frozen=True)
class Study:
  rows: tuple
  columns: tuple            # (header, key of report['mean'] or of `derived`)
  reference: str            # header of the seed's column
  derived: dict = dataclasses.field(default_factory=dict)   # key → keys averaged per seed
  preset: str = ''          # variant words every row gets (overridable by --preset)
  plots: bool = False
  figure: Callable | None = None
  # runs first, in <workdir>; returns {name: value} for `{name}` in the rows' variants
  prepare: Callable | None = None
  std: bool = False         # also the std over seeds in the first column (seed 004's unit)


def _zoo_rows(suite, datasets, reference):
  """The zoo's configs as they are on digits (32×32; seed 000's keep class "1"), and on
  textures at 64×64 (BCAE2 / KS-CAE: 128×128 on both)."""
  rows = []
  for label, name in zoo.SUITES[suite]:
    for d in datasets:
      variant = '' if d == 'digits' else 'dataset=textures' + (
          '' if zoo.MODELS[name][0] in ('bcae2', 'ks_cae') else ',image_size=64')
      rows.append(Row(label, functools.partial(zoo.make, name), variant,
                      reference.get((label, d), '–'), d))
  return tuple(rows)


AUROC = (('AUROC', 'auroc'), ('EER', 'eer'))
MOTION = ('fast', 'wrong_way', 'loiter')
_VIDEO = [   # (label, variant, seed 001 Tab. 4.13 UCSD2 AUROC / EER)
    ('BCAE1 (per frame)', 'bcae1', '0.84 / 0.27'), ('CRNN(2,N)', 'model=crnn_ae', '0.83 / 0.22'),
    ('CLSTM(2,N)', 'model=clstm_ae', '0.85 / 0.22'),
    ('CGRU(1,N)', 'model=cgru_ae,model_kwargs.recurrent_layers=1', '0.81 / 0.25'),
    ('CGRU(2,N)', 'model=cgru_ae', '0.86 / 0.22'),
    ('CGRU(3,N)', 'model=cgru_ae,model_kwargs.recurrent_layers=3', '0.85 / 0.23'),
    ('BiCRNN(2,N)', 'model=bicrnn_ae', '0.78 / 0.32'),
    ('BiCLSTM(2,N)', 'model=biclstm_ae', '0.70 / 0.31'),
    ('BiCGRU(2,N)', 'model=bicgru_ae', '0.85 / 0.21'),
    ('Seq2Seq CRNN(2,N)', 'model=seq2seq_crnn', '0.82 / 0.27'),
    ('Seq2Seq CLSTM(2,N)', 'model=seq2seq_clstm', '0.83 / 0.25'),
    ('Seq2Seq CGRU(2,N)', 'model=seq2seq_cgru', '0.86 / 0.20')]
_SEED002 = [   # (label, config, variant, data, the thesis' mean AUROC % (source))
    ('ALPS', alps, '', 'digits', '97.65 (Tab. 3.1, MNIST)'),
    ('AE + random latent noise', alps, 'noise', 'digits', '95.95 (Tab. 3.3, MNIST)'),
    ('Vanilla AE', alps, 'vanilla', 'digits', '95.42 (Tab. 3.3, MNIST)'),
    ('ADACL', adacl, '', 'digits', '98.01 (Tab. 4.1, MNIST)'),
    ('ADACL', adacl, 'textures', 'textures', '–')]
_ALPS_ABLATIONS = [(label, v, ref) for label, _, v, _, ref in _SEED002[:3]]   # Tab. 3.3
_ABLATIONS = [
    ('ADACL, BCE loss', 'bce', '–'), ('ADACL, discrete labels', 'discrete', '–'),
    ('ADACL, cut-paste only', 'cutpaste', '–'), ('ADACL, puzzling only', 'puzzle', '–'),
    ('ADACL, rotation only', 'rotate', '–'), ('ADACL, mix-up only', 'mixup', '–'),
    ('ADACL, [0, 0.1] – [0.9, 1]', 'narrow', '97.14 (Tab. 4.4, MNIST)'),
    ('ADACL, [0, 0.2] – [0.8, 1]', 'mid', '96.93 (Tab. 4.4, MNIST)')]


def _ablation_rows():
  """ADACL's ablations on digits; ALPS's and ADACL's on textures and walkway (the default
  rows' numbers on digits are the seed002 study's)."""
  rows = [Row(label, adacl.get_config, v, ref, 'digits') for label, v, ref in _ABLATIONS]
  for data in ('textures', 'walkway'):
    rows += [Row(label, alps.get_config, ','.join(filter(None, [data, v])), ref, data)
             for label, v, ref in _ALPS_ABLATIONS]
    rows += [Row(label, adacl.get_config, ','.join(filter(None, [data, v])), ref, data)
             for label, v, ref in [('ADACL', '', '98.01 (Tab. 4.1, MNIST)'), *_ABLATIONS]]
  return tuple(rows)


# seed 001 Tab. 4.8 (HAM10000 / UCSD Ped2 AUROC %), Tab. 4.9 (BCAE1 + SVDD), Tab. 4.6
_SEED001 = {'BCAE1': '68.60 / 83.85', 'SE-CAE': '69.36 / 82.71', 'AA-CAE': '68.78 / 83.28',
            'SA-CAE': '69.10 / 86.89', 'SSA-CAE': '70.15 / 88.06', 'BCAE1 + SVDD': '– / 88.85'}
_KS = {'BCAE2': '0.72', 'KS-CAE': '0.74', 'BCAE2 (SSIM loss)': '0.74',
       'KS-CAE (SSIM loss)': '0.75'}
_SEED000 = {'deep AE': '0.9768 / 0.8214', 'CBAM-AE': '0.9812 / 0.8251',
            'LTPA-AE (pc)': '0.9828 / 0.8084'}


def _memory_figure(result, path) -> str:
  rows = [r for r in result['rows'] if r['result']]
  return plots.metric_vs(path, [int(r['label'].split('=')[1]) for r in rows],
                         [r['result']['auroc']['per_seed'] for r in rows],
                         xlabel='memory size N', ylabel='mean AUROC',
                         title='MemAE: robustness to the memory size (seed 003 Fig. 7)')


def _dino_backbone(workdir: str, words: str) -> dict:
  """Pretrains DINO on walkway's training frames (a finished run is only re-exported);
  `quick` in the study's words makes it the quick run."""
  from experiments import dino as dino_run  # noqa: PLC0415
  path = os.path.join(workdir, 'dino')
  dino_run.run(dino.get_config('quick' if 'quick' in words.split(',') else ''), path)
  return {'dino': os.path.join(path, 'backbone.npz')}


def _tsne_figure(result, path) -> str:
  """t-SNE of the DINO, random-ViT and ResNet-50 features (the LSTM rows' caches)."""
  from experiments import features  # noqa: PLC0415
  rows = {r['label'].replace(' + LSTM', ''): os.path.join(result['workdir'], _key(
      r['label'], r['data'])) for r in result['rows'] if r['result'] and 'LSTM' in r['label']}
  return features.tsne_figure(rows, path, 250 if 'quick' in result['override'].split(',')
                              else 5000)


_SEED004 = [   # (label, variant, seed 004's UCSD Ped2 AUC % (mean ± std over 60 runs))
    ('DINO ViT-mini + LSTM', 'features.weights={dino}', '88.54 ± 0.22 (DINO ViT + LSTM)'),
    ('DINO ViT-mini + Transformer', 'transformer,features.weights={dino}', '–'),
    ('random ViT-mini + LSTM', '', '–'),
    ('random ViT-mini + Transformer', 'transformer', '–'),
    ('random ResNet-50 + LSTM', 'resnet50', '70.98 ± 0.26 (ResNet-50 + LSTM)'),
    ('random ResNet-50 + Transformer', 'resnet50,transformer', '–')]


STUDIES = {
    'seed001': Study(_zoo_rows('seed001', ('digits', 'textures'),
                               {(k, 'textures'): v for k, v in _SEED001.items()}),
                     AUROC, 'seed 001: HAM10000 / UCSD Ped2 AUROC %'),
    'ks': Study(_zoo_rows('ks', ('textures',), {(k, 'textures'): v for k, v in _KS.items()}),
                AUROC, 'seed 001: HAM10000 mean AUROC'),
    'seed000': Study(_zoo_rows('seed000', ('digits',), {(k, 'digits'): v
                                                        for k, v in _SEED000.items()}),
                     (('F1 buffered', 'f1@buffered'), ('F1 mean β', 'f1@mean'),
                      ('AUROC', 'auroc')), 'seed 000: F1 buffered / mean β (MNIST "1")'),
    'video': Study(
        tuple(Row(label, conv_rnn.get_config, v, ref, 'walkway') for label, v, ref in _VIDEO),
        (('AUROC', 'auroc_per_video_norm'), ('EER', 'eer_per_video_norm'),
         ('AUROC s(t)', 'auroc_regularity'), ('object', 'kind_per_video_norm/object'),
         *((k.replace('_', ' '), f'kind_per_video_norm/{k}') for k in MOTION),
         ('motion mean', 'motion')),
        'seed 001 UCSD2 AUROC / EER',
        derived={'motion': tuple(f'kind_per_video_norm/{k}' for k in MOTION)},
        preset='cpu', plots=True),
    'seed002': Study(tuple(Row(label, m.get_config, v, ref, d)
                           for label, m, v, d, ref in _SEED002),
                     (('mean AUROC', 'auroc'), ('clean', 'auroc_clean'),
                      ('perturbed', 'auroc_perturbed'), ('mean score', 'auroc_mean')),
                     'seed 002 mean AUROC % (their data)'),
    'seed002_ablations': Study(_ablation_rows(), (('mean AUROC', 'auroc'),),
                               'seed 002 mean AUROC % (MNIST)'),
    'memory_size': Study(tuple(Row(f'N={n}', memae.get_config, f'model_kwargs.memory_items={n}',
                                   data='digits')
                               for n in (10, 25, 50, 100, 200, 500, 1000, 2000)),
                         (('mean AUROC', 'auroc'),), 'seed 003', figure=_memory_figure),
    'seed004': Study(tuple(Row(label, feature_prediction.get_config, v, ref, 'walkway')
                           for label, v, ref in _SEED004),
                     (('AUROC', 'auroc_per_video_norm'), ('EER', 'eer_per_video_norm'),
                      ('AUROC global', 'auroc'), ('AUROC s(t)', 'auroc_regularity'),
                      ('object', 'kind_per_video_norm/object'),
                      *((k.replace('_', ' '), f'kind_per_video_norm/{k}') for k in MOTION)),
                     'seed 004 UCSD Ped2 AUC % (± sd)', prepare=_dino_backbone,
                     figure=_tsne_figure, std=True),
}


def _key(label: str, data: str) -> str:
  name = ''.join(c if c.isalnum() else '_' for c in f'{label}_{data}' if c not in '(),')
  return '_'.join(filter(None, name.split('_')))


def _value(mean: dict, key: str, derived: dict):
  """report['mean'][key], or a derived column: the mean of its keys per seed, ± CI."""
  if key in derived:
    parts = [mean[k]['per_seed'] for k in derived[key] if k in mean]
    return mean_ci(np.mean(parts, axis=0)) if parts else None
  return mean.get(key)


def _fmt(m, std: bool = False) -> str:
  if m is None:
    return '–'
  text = f'{m["mean"]:.4f}' + ('' if m.get('ci95') is None else f' ± {m["ci95"]:.4f}')
  return text + (f' (sd {m["std"]:.4f})' if std and m.get('std') is not None else '')


def table(study: Study, rows) -> str:
  head = ['model', 'data', 'seeds', *(h for h, _ in study.columns), study.reference]
  lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
  for r in rows:
    mean = r['result'] or {}
    n = mean[study.columns[0][1]]['n'] if study.columns[0][1] in mean else 0
    cells = [_fmt(_value(mean, k, study.derived), study.std and i == 0)
             for i, (_, k) in enumerate(study.columns)]
    lines.append(f'| {r["label"]} | {r["data"]} | {n} | ' + ' | '.join(cells)
                 + f' | {r["reference"]} |')
  return '\n'.join(lines)


def _report(row: Row, run_dir: str, seeds, words: str, plots_on: bool, collect_only: bool,
            rescore_from: str | None = None):
  path = os.path.join(run_dir, 'report.json')
  if collect_only:
    return json.loads(pathlib.Path(path).read_text()) if os.path.exists(path) else None
  if rescore_from:      # the trained row's own config, with --override's score settings
    trained = os.path.join(rescore_from, os.path.basename(run_dir))
    cfg = apply_variant(load_config(trained), words)
    cfg.seeds = tuple(int(s) for s in seeds)
    return rescore(trained, cfg, run_dir)
  cfg = row.make(','.join(filter(None, [row.variant, words])))
  cfg.seeds, cfg.plots = tuple(int(s) for s in seeds), plots_on
  return train_and_evaluate(cfg, run_dir)


def _selected(study: Study, only, data) -> list:
  return [row for row in study.rows
          if not (only and row.label not in only
                  and not any(fnmatch.fnmatchcase(row.label, p) for p in only))
          and not (data and row.data not in data)]


def _check_words(rows, words: str) -> None:
  """A bad --override or --preset fails before the first row, not hours into a sweep."""
  for row in rows:
    try:
      row.make(words)
    except ValueError as e:
      raise UserError(f'--override/--preset for row {row.label!r}: {e}') from None


def run(name: str, workdir: str, seeds, override: str = '', only=None,
        collect_only: bool = False, preset: str | None = None, data=None,
        rescore_from: str | None = None) -> dict:
  study = STUDIES[name]
  words = override if rescore_from else ','.join(
      filter(None, [study.preset if preset is None else preset, override]))
  selected = _selected(study, only, data)
  if not selected:
    raise UserError(f'no row of study {name!r} matches --only={only} --data={data}')
  _check_words(selected, words)
  fill = (study.prepare(workdir, words)
          if study.prepare and not (collect_only or rescore_from) else None)
  rows = []
  for row in selected:
    if fill is not None and '{' in row.variant:
      row = dataclasses.replace(row, variant=row.variant.format(**fill))
    report = _report(row, os.path.join(workdir, _key(row.label, row.data)), seeds, words,
                     study.plots, collect_only, rescore_from)
    rows.append({'label': row.label, 'data': row.data, 'variant': row.variant,
                 'reference': row.reference, 'result': report and report['mean']})
    if report:
      logging.info('%s on %s: %s', row.label, row.data, _fmt(
          _value(report['mean'], study.columns[0][1], study.derived)))
  result = {'study': name, 'workdir': workdir, 'seeds': [int(s) for s in seeds],
            'override': words, 'rows': rows, 'table': table(study, rows)}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, f'{name}.json'), 'w') as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(workdir, f'{name}.md'), 'w') as f:
    f.write(result['table'] + '\n')
  if study.figure:
    result['figure'] = study.figure(result, os.path.join(workdir, f'{name}.png'))
  return result


_STUDY = flags.DEFINE_enum('study', None, sorted([*STUDIES, 'svdd']), 'Which study.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs go (default runs/<study>).')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds (≥ 3 for a CI).')
_OVERRIDE = flags.DEFINE_string('override', '', 'key=value,... for every row.')
_PRESET = flags.DEFINE_string('preset', None, "Variant words for every row (default: the "
                              "study's, e.g. 'cpu' for video; '' for none).")
_ONLY = flags.DEFINE_list('only', None, "Run only the rows with these labels; '*' matches "
                          "any text ('ADACL*': every ADACL row).")
_DATA = flags.DEFINE_list('data', None, 'Run only the rows on these data (digits, ...): '
                          'per-dataset overrides are separate runs with --override.')
_COLLECT = flags.DEFINE_bool('collect_only', False, 'Only gather rows already run.')
_RESCORE = flags.DEFINE_string('rescore_from', None, "Re-score this sweep's trained rows "
                               'with --override (score settings only) into --workdir.')
_LRS = flags.DEFINE_list('lrs', ['5e-8', '5e-7', '5e-6', '5e-5'], '(svdd) fine-tuning lrs.')
_EPOCHS = flags.DEFINE_list('epochs', ['1', '2', '5', '10', '20'], '(svdd) epoch counts '
                            'scored.')
_BASE = flags.DEFINE_string('base_workdir', None, '(svdd) the trained AE runs to fine-tune '
                            '(default <workdir>/base).')


def main(argv):
  cli.start(argv)
  workdir = _WORKDIR.value or os.path.join('runs', _STUDY.value)
  if _STUDY.value == 'svdd':
    result = cli.run_or_fail(svdd_sweep.run, workdir, _SEEDS.value, _OVERRIDE.value,
                             _LRS.value, _EPOCHS.value, _BASE.value)
  else:
    result = cli.run_or_fail(run, _STUDY.value, workdir, _SEEDS.value, _OVERRIDE.value,
                             _ONLY.value, _COLLECT.value, _PRESET.value, _DATA.value,
                             _RESCORE.value)
  print(result['table'])


if __name__ == '__main__':
  flags.mark_flag_as_required('study')
  app.run(main)
