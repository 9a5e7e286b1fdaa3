"""Explains a trained image run's test samples with ε-LRP, LIME, KernelSHAP, counterfactuals,
gradient × input and integrated gradients, and measures each against the pixel masks
(seed 001 §3.8, §4.10; vadjax/explain).

  python -m experiments.explain --workdir=RUN [--explainers=all|lrp,lime,...] [--n=24]
      [--samples=500] [--segmentation=quickshift|slic] [--background=recon|blur|mean|black]
      [--category=C] [--seeds=0,1,2] [--out=DIR]
  python -m experiments.explain --workdir=RUN --mode=speed [--n=4] [--samples=500]

Per trained (category, seed): OUT/<category>/seed<k>/ gets maps.npz (images, masks, scores
and every map), metrics.json and explanations.png (seed 001 Fig. 4.19's layout). OUT gets
explanations.json and explanations.md: pixel AUROC, AUPRO, deletion and insertion areas and
seconds per image, mean ± 95% CI over the seeds. --mode=speed times our LIME and KernelSHAP
against the `lime` and `shap` packages driving the same jitted model through numpy, same
samples, and writes speed.json. Default OUT: WORKDIR/explanations. Runtime on a 2-core CPU:
BCAE1 at 64², n=24, 500 samples, all explainers: ~1-2 min per seed.
"""

import json
import os
import sys
import time

from absl import app, flags

from experiments.cli import fail, run_or_fail, start

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained image experiment.', required=True)
_EXPLAINERS = flags.DEFINE_string('explainers', 'all', 'Comma-separated explainers, or all '
                                  '(every one that applies to the model).')
_N = flags.DEFINE_integer('n', 24, 'Test samples explained per run (3/4 anomalous).')
_SAMPLES = flags.DEFINE_integer('samples', 500, 'LIME / KernelSHAP coalitions per image.')
_SEGMENTATION = flags.DEFINE_enum('segmentation', 'quickshift', ['quickshift', 'slic'],
                                  'Superpixels of LIME and KernelSHAP.')
_BACKGROUND = flags.DEFINE_enum('background', 'recon', ['recon', 'blur', 'mean', 'black'],
                                'What KernelSHAP and the rectangle counterfactual put in place '
                                'of a removed region (recon: the normal reconstruction).')
_CATEGORY = flags.DEFINE_string('category', None, 'One category (default: every one).')
_SEEDS = flags.DEFINE_list('seeds', None, "Seeds (default: the config's).")
_OUT = flags.DEFINE_string('out', None, 'Output folder (default: WORKDIR/explanations).')
_MODE = flags.DEFINE_enum('mode', 'explain', ['explain', 'speed'], 'Explain and measure, or '
                          'time against the lime and shap packages.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar on stderr.')


def _runs():
  from vadjax.train.experiment import Experiment, load_config, restore
  config = load_config(_WORKDIR.value)
  exp = Experiment(config)
  categories = [_CATEGORY.value] if _CATEGORY.value else exp.categories()
  seeds = [int(s) for s in (_SEEDS.value or config.seeds)]
  for category in categories:
    for seed in seeds:
      yield restore(_WORKDIR.value, category, seed, config=config, experiment=exp)


def _settings():
  from vadjax.explain.study import Settings
  return Settings(samples=_SAMPLES.value, segmentation=_SEGMENTATION.value,
                  background=_BACKGROUND.value)


def _output_folder() -> str:
  from vadjax.registry import UserError
  out = _OUT.value or os.path.join(_WORKDIR.value, 'explanations')
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot write the output folder {out!r}: {e.strerror}') from None
  return out


def _explain() -> str:
  from vadjax.explain import study
  from vadjax.progress import Progress
  out = _output_folder()
  records = []
  for run in _runs():
    progress = (lambda total, name=run.name: Progress(f'explaining {name}', total,
                                                      _PROGRESS.value, unit='maps'))
    records.append(study.explain_run(run, _EXPLAINERS.value, _N.value, _settings(),
                                     os.path.join(out, run.category, f'seed{run.seed}'),
                                     progress))
  summary = study.summarize(records)
  categories = sorted({r['run'].split('/')[1] for r in records})
  by_category = {c: [r for r in records if r['run'].split('/')[1] == c] for c in categories}
  per_category = {c: study.summarize(rs) for c, rs in by_category.items()}
  with open(os.path.join(out, 'explanations.json'), 'w') as f:
    json.dump({'summary': summary, 'per_category': per_category, 'runs': records}, f, indent=1)
  table = study.table(summary, records)
  if study.paired(records):
    table += '\n\nPaired per run:\n\n' + study.paired(records)
  if len(categories) > 1:
    table += ''.join(f'\n\n### {c}\n\n' + study.table(per_category[c], by_category[c])
                     for c in categories)
  with open(os.path.join(out, 'explanations.md'), 'w') as f:
    f.write(table + '\n')
  return table


def _speed() -> str:
  from vadjax.explain import speed
  run = next(_runs())
  out = _output_folder()
  result = speed.compare(run, _N.value, _SAMPLES.value)
  with open(os.path.join(out, 'speed.json'), 'w') as f:
    json.dump(result, f, indent=1)
  return speed.table(result)


def main(argv):
  start(argv)
  if _N.value < 1 or _SAMPLES.value < 4:
    fail(f'--n must be >= 1 and --samples >= 4; got {_N.value}, {_SAMPLES.value}')
  t0 = time.perf_counter()
  print(run_or_fail(_speed if _MODE.value == 'speed' else _explain))
  print(f'done in {time.perf_counter() - t0:.0f} s', file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
