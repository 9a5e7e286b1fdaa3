"""Scoring, calibration, test metrics and report figures of a trained run.

Everything here works on values: a run (`experiment.TrainedRun`: steps, state, config,
normaliser, thresholds) and an `EvalSet` (the test split, its labels read once). It never
trains; the training loop calls `score_split` and `calibrate`, `--mode=eval` and users of a
restored run call `evaluate`.
"""

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from vadjax import parallel
from vadjax.data import eval_batches
from vadjax.data.sources import Subset, field
from vadjax.eval import metrics as metrics_lib, plots, report as report_lib
from vadjax.eval.pixel import PixelStats
from vadjax.eval import thresholds as thr
from vadjax.eval import video as video_lib


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """A test split with its small per-record fields (labels, kinds, videos), read once;
  frames and pixel masks stay in the source and are read batch by batch."""
  source: object
  labels: np.ndarray
  kinds: np.ndarray
  kind_names: tuple
  videos: np.ndarray | None        # video index per record (video datasets)
  has_masks: bool                  # pixel ground truth (datasets that have it)

  @classmethod
  def from_splits(cls, splits) -> 'EvalSet':
    test = splits.test
    return cls(source=test, labels=field(test, 'label'), kinds=field(test, 'kind'),
               kind_names=tuple(splits.kind_names),
               videos=field(test, 'video') if 'video' in test[0] else None,
               has_masks=splits.has_masks)


def score_split(steps, state, source, mesh, batch_size: int, keep_recon=False,
                pixels: PixelStats | None = None, keep_maps=False) -> dict:
  """Scores every record of a source: per-record scores (and a method's other scores
  `score/<name>`), the top patch of patch stacks and, when asked, pixel maps (`keep_maps`:
  a chunk of a video, a request) and reconstructions (the few plotted samples). A whole
  split's maps are never kept: with `pixels`, they and the records' masks go into its
  statistics batch by batch."""
  fields = ('image', 'offset') if 'offset' in source[0] else ('image',)
  parts = {}
  for batch, n in eval_batches(source, batch_size, fields, ('mask',) if pixels else ()):
    masks = batch.pop('mask', None)
    out = jax.device_get(steps.score(state, parallel.shard_batch(batch, mesh)))
    if pixels is not None and 'pixel' in out:
      pixels.update(out['pixel'][:n], masks)
    for k, v in out.items():
      if (k == 'recon' and not keep_recon) or (k == 'pixel' and not (keep_maps or keep_recon)):
        continue
      parts.setdefault(k, []).append(v[:n])
  return {k: np.concatenate(v) for k, v in parts.items()}


def mean_loss(steps, state, source, mesh, batch_size: int) -> float:
  """The method's loss over a whole split (padding rows weighted out)."""
  total, count = 0.0, 0
  for batch, n in eval_batches(source, batch_size):
    total += float(steps.loss(state, parallel.shard_batch(batch, mesh))) * n
    count += n
  return total / max(count, 1)


def calibrate(steps, state, splits, mesh, batch_size: int, contamination: float) -> dict:
  """Fits the score normaliser on normal train + val scores and every threshold on the
  normalised train/val scores (never on test)."""
  train = score_split(steps, state, splits.train, mesh, batch_size)['score']
  val = score_split(steps, state, splits.val, mesh, batch_size)['score']
  labels, kinds = field(splits.val, 'label'), field(splits.val, 'kind')
  norm = thr.ScoreNormalizer.fit(np.concatenate([train, val[labels == 0]]))
  thresholds = thr.fit_thresholds(norm(train), norm(val), labels, kinds, contamination)
  return {'normalizer': norm.to_dict(), 'thresholds': thresholds}


def test_metrics(data: EvalSet, out: dict, run, pixels: PixelStats | None = None) -> dict:
  """Image, pixel, per-kind, per-threshold and (videos) frame-level metrics of scores `out`
  of the test split; pixel metrics from the statistics `pixels` accumulated while scoring."""
  norm = run.normalizer
  result = report_lib.run_metrics(
      labels=data.labels, kinds=data.kinds, scores=norm(out['score']),
      thresholds=run.thresholds, kind_names=data.kind_names, positive=run.config.positive)
  if pixels is not None and pixels.anomalous.any():   # ADACL's regressor makes no maps
    result['image'].update(pixels.results())
  for k in out:               # a method's other scores (ALPS: clean, perturbed, mean)
    if k.startswith('score/'):
      result['image'][f'auroc_{k[6:]}'] = metrics_lib.auroc(data.labels, out[k])
  if data.videos is not None:
    frame = video_lib.frame_metrics(data.labels, out['score'], data.videos, data.kinds,
                                    data.kind_names)
    result['per_kind_auroc_per_video_norm'] = frame.pop('per_kind_auroc_per_video_norm')
    result['image'].update(frame)
  return result


def evaluate(run, data: EvalSet, plots: bool) -> dict:
  """Scores the test split with a trained run; writes the run's `metrics.json` and the
  raw per-record test scores `test_scores.npz`; returns the metrics."""
  cfg, meta = run.config, run.meta
  t0 = time.perf_counter()
  pixels = PixelStats() if data.has_masks else None
  out = score_split(run.steps, run.state, data.source, run.mesh, cfg.eval_batch_size,
                    pixels=pixels)
  t_score = time.perf_counter() - t0
  result = test_metrics(data, out, run, pixels)
  result.update(name=run.name, seed=run.seed, epochs=meta['epoch'], steps=meta['step'],
                stopped_early=meta.get('stopped_early', False),
                timings={**meta.get('timings', {}), 'score_s': t_score,
                         'score_samples_per_s': len(data.source) / max(t_score, 1e-9)})
  if jax.process_index() == 0:
    if plots:
      result['plots'] = figures(run, data, out, pixels)
    np.savez(os.path.join(run.run_dir, 'test_scores.npz'), score=out['score'],
             **{k.replace('/', '_'): v for k, v in out.items() if k.startswith('score/')})
    with open(os.path.join(run.run_dir, 'metrics.json'), 'w') as f:
      json.dump(result, f, indent=1)
  return result


def _frame(x, offset, clip_length=None):
  """The scored frame of a clip record (images pass through). A prediction (Seq2Seq) of
  the clip's last frames gives its frame nearest to the scored one."""
  if x.ndim != 4:
    return x
  offset -= (clip_length or len(x)) - len(x)
  return x[min(max(offset, 0), len(x) - 1)]


def _spread(indices, n):
  """n of the indices, evenly spread."""
  return indices[np.linspace(0, len(indices) - 1, n).astype(int)] if n else indices[:0]


@dataclasses.dataclass
class _Samples:
  """The few test records shown in figures: their shown frames, what the model saw and
  the scores/reconstructions of those frames."""
  index: np.ndarray
  images: np.ndarray
  model_input: np.ndarray
  recons: np.ndarray | None
  pixel: np.ndarray | None
  masks: np.ndarray | None


def _samples(run, data: EvalSet) -> _Samples:
  n_plot = run.config.num_plot_samples
  normal, anomalous = np.flatnonzero(data.labels == 0), np.flatnonzero(data.labels != 0)
  n_bad = min(n_plot // 2, len(anomalous))
  idx = np.concatenate([_spread(normal, min(n_plot - n_bad, len(normal))),
                        _spread(anomalous, n_bad)])
  sample = score_split(run.steps, run.state, Subset(data.source, idx), run.mesh,
                       run.config.eval_batch_size, keep_recon=True)
  records = [data.source[int(i)] for i in idx]
  recons = sample.get('recon')
  if 'patch' in sample:                     # patch stacks: each frame's top patch
    images = np.stack([r['image'][p] for r, p in zip(records, sample['patch'])])
    return _Samples(idx, images, images, recons, sample.get('pixel'), None)
  offsets = [int(r.get('offset', 0)) for r in records]
  images = np.stack([_frame(r['image'], o) for r, o in zip(records, offsets)])
  if recons is not None:
    recons = np.stack([_frame(x, o, len(r['image']))
                       for x, o, r in zip(recons, offsets, records)])
  masks = np.stack([r['mask'] for r in records]) if data.has_masks else None
  return _Samples(idx, images, np.stack([r['image'] for r in records]), recons,
                  sample.get('pixel'), masks)


def figures(run, data: EvalSet, out: dict, pixels: PixelStats | None = None) -> dict:
  """Report figures: ROC/PR, histogram, training curves, reconstructions of normal and
  anomalous test samples spread over the split, per-video score timelines, the method's
  own figures, and whatever the model's outputs hold pictures of (attention maps, memory
  items)."""
  s, run_dir = _samples(run, data), run.run_dir
  scores = run.normalizer(out['score'])
  paths = report_lib.run_plots(run_dir, labels=data.labels, scores=scores,
                               thresholds=run.thresholds, history=run.meta['history'],
                               images=s.images, recons=s.recons, pixel=s.pixel, masks=s.masks)
  paths.update(run.method.figures(run_dir, s.images, lambda x: run.score(x)['score']))
  if data.videos is not None:
    paths['score_timelines'] = plots.score_timelines(
        os.path.join(run_dir, 'score_timelines.png'),
        video_lib.per_video_normalized(out['score'], data.videos), data.labels, data.videos,
        smoothed=video_lib.per_video_irregularity(out['score'], data.videos))
  if pixels is not None and pixels.anomalous.any():
    paths['pixel_roc_pro'] = plots.pixel_roc_pro(os.path.join(run_dir, 'pixel_roc_pro.png'),
                                                 *pixels.roc(), *pixels.pro(), pixels.limit)
  paths.update(output_figures(run, s, data.labels[s.index]))
  return paths


def output_figures(run, s: _Samples, labels) -> dict:
  """Figures of the model outputs that are pictures: `attention` maps and the decoded
  items of a `memory_weights` model (seed 003)."""
  model, variables = run.steps.model, run.variables
  outputs = jax.jit(lambda v, x: model.apply(v, x))(variables, jnp.asarray(s.model_input))
  paths = {}
  if 'attention' in outputs:
    paths['attention_maps'] = plots.attention_maps(
        os.path.join(run.run_dir, 'attention_maps.png'), s.images,
        jax.device_get(outputs['attention']), labels)
  if 'memory_weights' in outputs:
    grid = outputs['memory_weights'].shape[1:-1]
    items = jax.device_get(model.apply(variables, grid, method=model.decode_items))
    if items.ndim == 5:                     # clips: the middle frame
      items = items[:, items.shape[1] // 2]
    paths['memory_items'] = plots.image_grid(
        os.path.join(run.run_dir, 'memory_items.png'), items,
        'decoded single memory items (as in seed 003)')
  return paths
