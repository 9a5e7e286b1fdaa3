"""Re-scoring a trained workdir with settings that change only how its models score (a
method's `SCORE_ONLY` settings, e.g. `reconstruction.score_window`).

The trained workdir is only read. Each run's checkpoint is restored, its score normaliser
and thresholds are fitted again on train/val as training fits them (they depend on the
score), and the test split is evaluated into another workdir, whose report.json names the
trained one. Seed 001 scores a frame by its mean error; docs/video.md compares that with
the worst window on the same checkpoints.
"""

import dataclasses
import json
import os
import time

import jax
from absl import logging

from vadjax.eval import report as report_lib
from vadjax.registry import UserError
from vadjax.train import evaluate as evaluate_lib
from vadjax.train import workdir as workdir_lib
from vadjax.train.experiment import (Experiment, load_config, load_splits, restore,
                                     stored_fingerprint)


def rescore(trained: str, config, workdir: str) -> dict:
  """Evaluates every run of `trained` with `config` (the trained workdir's config with
  score-only settings changed) into `workdir`; returns the report."""
  if os.path.abspath(trained) == os.path.abspath(workdir):
    raise UserError('re-scoring writes a new workdir; the trained one stays as it is '
                    f'(got {workdir!r} for both)')
  exp = Experiment(config)
  stored = stored_fingerprint(trained)
  workdir_lib.check_writable(workdir)
  with workdir_lib.lock(workdir):
    t0, results = time.perf_counter(), []
    for i, cat in enumerate(exp.categories()):
      splits = load_splits(config, cat, workdir)
      if i == 0:
        fp = workdir_lib.fingerprint(config, splits.image_shape, splits.digest)
        _check_score_only(exp.method, (load_config(trained).to_dict(), stored),
                          (config.to_dict(), fp))
        workdir_lib.bind(workdir, config, fp)
      data = evaluate_lib.EvalSet.from_splits(splits)
      for seed in config.seeds:
        # metrics.json and test_scores.npz go to the new workdir's run folder
        run = dataclasses.replace(restore(trained, cat, seed, config, exp),
                                  run_dir=os.path.join(workdir, str(cat), f'seed{seed}'))
        os.makedirs(run.run_dir, exist_ok=True)
        calib = evaluate_lib.calibrate(run.steps, run.state, splits, exp.mesh,
                                       config.eval_batch_size, config.contamination)
        run.meta.update(calib)
        results.append({**evaluate_lib.evaluate(run, data, plots=False), 'category': cat})
        logging.info('[%s] re-scored: test AUROC %.4f', run.name,
                     results[-1]['image']['auroc'])
    report = {**report_lib.summarize(config, results, time.perf_counter() - t0),
              'rescored_from': os.path.abspath(trained)}
    if jax.process_index() == 0:
      report_lib.write(report, workdir)
      print(report_lib.table(report))
    return report


# how a run is scored on this machine, not what it scores: free to differ
_RUNTIME_KEYS = ('seeds', 'num_devices', 'eval_batch_size', 'plots')


def _check_score_only(method, trained: tuple, new: tuple) -> None:
  """Refuses a config or data that differ from the trained ones in anything but score-only
  settings: the checkpoints would not be the model the report describes. `trained` and
  `new`: (config dict, fingerprint) each."""
  def strip(config, fp):       # JSON copies: neither argument is changed
    config, fp = (json.loads(json.dumps(x, default=list)) for x in (config, fp))
    for key in _RUNTIME_KEYS:
      config.pop(key, None)
    for key in method.SCORE_ONLY:
      config.get(method.group, {}).pop(key, None)
      fp.get('method_settings', {}).get(method.group, {}).pop(key, None)
    return {'config': config, 'experiment': fp}
  diff = workdir_lib.first_difference(strip(*trained), strip(*new))
  if diff:
    only = ', '.join(f'{method.group}.{k}' for k in method.SCORE_ONLY) or 'none'
    raise UserError(f're-scoring may change only score settings ({only}); {diff}')
