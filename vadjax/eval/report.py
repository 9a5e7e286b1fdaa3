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

SUMMARY_KEYS = ('auroc', 'aupr', 'eer', 'pixel_auroc', 'auroc_clean', 'auroc_perturbed',
                'auroc_mean', 'auroc_raw', 'auroc_per_video_norm',
                'eer_per_video_norm', 'auroc_mean_per_video', 'auroc_regularity',
                'eer_regularity')   # clean..mean: ALPS, raw: ADACL; from per_video_norm on: video


def run_metrics(labels, kinds, scores, thresholds, kind_names, pixel_scores=None,
                masks=None, positive='anomaly') -> dict:
  """Image-level ranking metrics, per-anomaly-kind AUROC, metrics at every threshold and,
  where masks exist, pixel-level AUROC over all test pixels."""
  labels, kinds = np.asarray(labels), np.asarray(kinds)
  out = {'image': metrics.ranking_metrics(labels, scores), 'per_kind_auroc': {},
         'thresholds': {}}
  normal = labels == 0
  for k in np.unique(kinds[~normal]):
    sel = normal | (kinds == k)
    out['per_kind_auroc'][kind_names[k]] = metrics.auroc(labels[sel], scores[sel])
  for name, t in thresholds.items():
    out['thresholds'][name] = metrics.threshold_metrics(labels, scores, t, positive)
  if masks is not None:
    out['image']['pixel_auroc'] = metrics.auroc(np.asarray(masks).ravel() > 0.5,
                                                np.asarray(pixel_scores).ravel())
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


def summarize(config, results: list[dict], seconds: float) -> dict:
  """Per-category mean ± CI over seeds, and the mean over categories (averaged per seed,
  then mean ± CI over seeds)."""
  cats = list(dict.fromkeys(r['category'] for r in results))
  seeds = list(dict.fromkeys(r['seed'] for r in results))
  keys = [k for k in SUMMARY_KEYS if k in results[0]['image']]
  thr_names = list(results[0]['thresholds'])
  per_cat = {}
  for c in cats:
    rs = [r for r in results if r['category'] == c]
    per_cat[c] = {k: metrics.mean_ci([r['image'][k] for r in rs]) for k in keys}
    for t in thr_names:
      per_cat[c][f'f1@{t}'] = metrics.mean_ci([r['thresholds'][t]['f1'] for r in rs
                                               if t in r['thresholds']])
  mean = {}
  for k in keys:
    per_seed = [np.mean([r['image'][k] for r in results if r['seed'] == s]) for s in seeds]
    mean[k] = metrics.mean_ci(per_seed)
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
