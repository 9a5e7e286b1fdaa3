"""Per-run metrics, experiment summaries (mean ± 95% CI over seeds), report.json and the
printed results table."""

import datetime
import importlib.metadata
import json
import os
import platform

import jax
import numpy as np

from vadjax.eval import metrics, plots

SUMMARY_KEYS = ('auroc', 'aupr', 'eer', 'pixel_auroc', 'pixel_aupro', 'auroc_clean', 'auroc_perturbed',
                'auroc_mean', 'auroc_raw', 'auroc_per_video_norm',
                'eer_per_video_norm', 'auroc_mean_per_video', 'auroc_regularity',
                'eer_regularity')   # clean..mean: ALPS, raw: ADACL; from per_video_norm on: video


def run_metrics(labels, kinds, scores, thresholds, kind_names, positive='anomaly') -> dict:
  """Image-level ranking metrics, per-anomaly-kind AUROC and metrics at every threshold
  (pixel metrics: vadjax/eval/pixel.py, accumulated while scoring)."""
  labels, kinds = np.asarray(labels), np.asarray(kinds)
  out = {'image': metrics.ranking_metrics(labels, scores), 'per_kind_auroc': {},
         'thresholds': {}}
  normal = labels == 0
  for k in np.unique(kinds[~normal]):
    sel = normal | (kinds == k)
    out['per_kind_auroc'][kind_names[k]] = metrics.auroc(labels[sel], scores[sel])
  for name, t in thresholds.items():
    out['thresholds'][name] = metrics.threshold_metrics(labels, scores, t, positive)
  return out


def run_plots(run_dir, labels, scores, thresholds, history, images, recons, pixel, masks):
  paths = {'roc_pr': plots.roc_pr(os.path.join(run_dir, 'roc_pr.png'), labels, scores),
           'histogram': plots.histogram(os.path.join(run_dir, 'score_histogram.png'), labels,
                                        scores, thresholds)}
  if recons is not None:      # reconstruction methods
    paths['reconstructions'] = plots.recon_grid(os.path.join(run_dir, 'reconstructions.png'),
                                                images, recons, pixel, masks)
  if history:
    paths['training_curves'] = plots.training_curves(
        os.path.join(run_dir, 'training_curves.png'), history)
  return paths


def _versions() -> dict:
  out = {'python': platform.python_version()}
  for pkg in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'grain', 'numpy'):
    try:
      out[pkg] = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def run_values(r: dict) -> dict:
  """A run's summary numbers: SUMMARY_KEYS, F1 at every threshold (`f1@<name>`), and the
  per-kind AUROCs (`kind/<name>`; videos also `kind_per_video_norm/<name>`)."""
  v = {k: r['image'][k] for k in SUMMARY_KEYS if k in r['image']}
  v.update({f'f1@{t}': m['f1'] for t, m in r['thresholds'].items()})
  v.update({f'kind/{k}': a for k, a in r['per_kind_auroc'].items()})
  v.update({f'kind_per_video_norm/{k}': a
            for k, a in r.get('per_kind_auroc_per_video_norm', {}).items()})
  return v


def _aggregate(results: list[dict], seeds) -> dict:
  """Mean ± CI over seeds of every run value that all runs have (per seed: the mean over
  the runs of that seed, i.e. over categories); keeps the per-seed values."""
  values = [run_values(r) for r in results]
  keys = [k for k in values[0] if all(k in v for v in values)]
  out = {}
  for k in keys:
    per_seed = [float(np.mean([v[k] for v, r in zip(values, results) if r['seed'] == s]))
                for s in seeds]
    out[k] = {**metrics.mean_ci(per_seed), 'per_seed': per_seed}
  return out


def summarize(config, results: list[dict], seconds: float) -> dict:
  """Per-category mean ± CI over seeds, and the mean over categories (averaged per seed,
  then mean ± CI over seeds), of every run value (`run_values`)."""
  cats = list(dict.fromkeys(r['category'] for r in results))
  seeds = list(dict.fromkeys(r['seed'] for r in results))
  per_cat = {c: _aggregate([r for r in results if r['category'] == c],
                           [s for s in seeds if any(r['seed'] == s and r['category'] == c
                                                    for r in results)]) for c in cats}
  mean = _aggregate(results, seeds)
  dev = jax.devices()[0]
  return {
      'config': config.to_dict(), 'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'versions': _versions(),
      'device': {'platform': dev.platform, 'kind': dev.device_kind,
                 'count': jax.device_count(), 'processes': jax.process_count(),
                 'cpu': platform.processor() or platform.machine()},
      'per_category': per_cat, 'mean': mean, 'runs': results,
      'timings': {'total_s': seconds,
                  'train_s': float(sum(r['timings'].get('train_s', 0) for r in results)),
                  'score_s': float(sum(r['timings']['score_s'] for r in results))}}


def write(report: dict, workdir: str) -> str:
  path = os.path.join(workdir, 'report.json')
  with open(path, 'w') as f:
    json.dump(report, f, indent=1, default=str)
  return path


def _fmt(m: dict) -> str:
  if m.get('ci95') is None:
    return f'{m["mean"]:.4f}'
  return f'{m["mean"]:.4f} ± {m["ci95"]:.4f}'


def table(report: dict) -> str:
  """A markdown table: one row per category, and the mean over categories."""
  cfg = report['config']
  keys = [k for k in SUMMARY_KEYS if k in report['mean']]
  f1 = [k for k in next(iter(report['per_category'].values())) if k.startswith('f1@')]
  head = ['category'] + keys + f1
  lines = [f'{cfg["model"]} / {cfg["method"]} on {cfg["dataset"]} '
           f'({len(cfg["seeds"])} seed(s); ± = 95% CI over seeds)',
           '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for c, m in report['per_category'].items():
    lines.append('| ' + ' | '.join([c] + [_fmt(m[k]) for k in keys + f1]) + ' |')
  lines.append('| **mean** | ' + ' | '.join(_fmt(report['mean'][k]) for k in keys)
               + ' |' * (len(f1) + 1))
  return '\n'.join(lines)
