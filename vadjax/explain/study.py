"""Explains a trained run's test samples with every explainer and measures them against
the pixel masks (seed 001 §4.10, measured instead of pictured): `explain_run` is what
`python -m experiments.explain` runs per trained (category, seed).
"""

import dataclasses
import json
import os
import time

import jax.numpy as jnp
import numpy as np

from vadjax.data.sources import field
from vadjax.eval import plots
from vadjax.explain import evaluate, gradients, perturbation
from vadjax.explain.lrp import LRPUnsupported
from vadjax.explain.target import Explained, ScoreLayer
from vadjax.registry import UserError
from vadjax.train import load_splits

EXPLAINERS = ('residual', 'lrp', 'lrp_plus', 'lrp_box', 'gradient_x_input',
              'integrated_gradients', 'lime', 'shap', 'counterfactual_rect',
              'counterfactual_grad')
SEGMENT_EXPLAINERS = ('lime', 'shap')


@dataclasses.dataclass
class Settings:
  """The explainers' settings (the CLI's flags)."""
  samples: int = 500               # LIME and KernelSHAP coalitions per image
  segmentation: str = 'quickshift'
  n_segments: int = 50             # SLIC only
  background: str = 'recon'        # SHAP, rectangles, deletion: 'blur' without a recon
  lrp_eps: float = 1e-6
  ig_steps: int = 32
  counterfactual_steps: int = 200
  curve_steps: int = 16
  seed: int = 0


def applicability(explained: Explained) -> dict:
  """Explainer name → None if it applies to the run, else why not."""
  why = dict.fromkeys(EXPLAINERS)
  if not explained.reconstructs:
    why['residual'] = f'{explained.run.config.model} makes no reconstruction'
  for name, rule in (('lrp', 'epsilon'), ('lrp_plus', 'epsilon_plus'),
                     ('lrp_box', 'epsilon_plus_box')):
    try:
      gradients.lrp_check(explained, rule)
    except LRPUnsupported as e:
      why[name] = str(e)
  return why


def choose(text: str, explained: Explained) -> list[str]:
  """The explainers named in `text` (comma-separated; 'all': every one that applies)."""
  why = applicability(explained)
  if text.strip() == 'all':
    return [n for n in EXPLAINERS if why[n] is None]
  names = [n.strip() for n in text.split(',') if n.strip()]
  for n in names:
    if n not in why:
      raise UserError(f'unknown explainer {n!r}; choose from {", ".join(EXPLAINERS)} or all')
    if why[n]:
      raise UserError(f'explainer {n!r} does not apply to this run: {why[n]}')
  if not names:
    raise UserError('no explainer named; give --explainers=all or a list')
  return names


def frames_at(test, idx):
  """(images (k, S, S, C), masks (k, S, S) or None) of test records `idx` as frames (patch
  stacks and clips: their scored frame), read for those records only."""
  idx = [int(i) for i in idx]
  if hasattr(test, 'videos'):                                   # clips, patch stacks
    pos = [test.position(i) for i in idx]
    images = np.stack([test.videos[v].frames[t] for v, t in pos])
    has = all(v.masks is not None for v in test.videos)
    masks = np.stack([test.videos[v].masks[t] for v, t in pos]) if has else None
    return images, masks
  records = [test[i] for i in idx]
  images = np.stack([r['image'] for r in records])
  masks = np.stack([r['mask'] for r in records]) if 'mask' in records[0] else None
  return images, masks


def with_regions(test, batch: int = 256) -> np.ndarray | None:
  """Per test record: whether its pixel mask marks anything (None without masks), read in
  batches."""
  flags = []
  for i in range(0, len(test), batch):
    _, masks = frames_at(test, range(i, min(i + batch, len(test))))
    if masks is None:
      return None
    flags.append(masks.reshape(len(masks), -1).max(axis=1) > 0.5)
  return np.concatenate(flags)


def select(labels, regions, n: int, seed: int) -> np.ndarray:
  """n test samples: three quarters anomalous (with a non-empty mask where masks exist:
  `regions`), the rest normal, drawn with `seed`, anomalous first."""
  rng = np.random.default_rng(seed)
  anomalous = labels == 1
  if regions is not None:
    anomalous &= regions
  a, z = np.flatnonzero(anomalous), np.flatnonzero(labels == 0)
  n_a = min(len(a), max(1, n - n // 4))
  n_z = min(len(z), n - n_a)
  if n_a == 0:
    raise UserError('the test split has no anomalous sample to explain')
  return np.r_[np.sort(rng.choice(a, n_a, replace=False)),
               np.sort(rng.choice(z, n_z, replace=False))].astype(int)


def _fill(images, kind: str, recon, segments):
  """Each image's background of `kind` ('recon' falls back to 'blur' without one)."""
  kind = kind if (kind != 'recon' or recon is not None) else 'blur'
  recon = recon if recon is not None else images
  return np.stack([perturbation.background(x, kind, seg, r)
                   for x, r, seg in zip(images, recon, segments)]), kind


def explain(explained: Explained, images, names, s: Settings, progress=None) -> dict:
  """{'maps': name → (N, H, W), 'seconds': name → wall seconds per image (compilation
  included), 'boxes': the rectangle counterfactual's squares (top, left, side), 'recon',
  'fill_kind' (the background SHAP and the squares used), 'blur' (deletion's and
  integrated gradients' background)}."""
  images = explained.check(images)
  n = len(images)
  recon = explained.reconstruction(images)
  segments = [None] * n
  if s.background == 'mean' or any(nm in SEGMENT_EXPLAINERS for nm in names):
    segments = [perturbation.segment(im, s.segmentation, s.n_segments) for im in images]
  fill, fill_kind = _fill(images, s.background, recon, segments)
  blur = np.stack([perturbation.background(x, 'blur') for x in images])
  maps, seconds, boxes = {}, {}, None
  x = jnp.asarray(images)
  rng = np.random.default_rng(s.seed)

  def timed(name, fn):
    t0 = time.perf_counter()
    maps[name] = np.asarray(fn(), np.float32)
    seconds[name] = (time.perf_counter() - t0) / n
    if progress:
      progress.update(n)

  batched = {
      'residual': lambda: explained.residual(images),
      'lrp': lambda: gradients.lrp(explained, images, s.lrp_eps),
      'lrp_plus': lambda: gradients.lrp(explained, images, s.lrp_eps, 'epsilon_plus'),
      'lrp_box': lambda: gradients.lrp(explained, images, s.lrp_eps, 'epsilon_plus_box'),
      'gradient_x_input': lambda: gradients.gradient_x_input(explained.fn, x),
      'integrated_gradients': lambda: gradients.integrated_gradients(
          explained.fn, x, jnp.asarray(blur), steps=s.ig_steps),
      'counterfactual_grad': lambda: jnp.sum(jnp.abs(gradients.counterfactual(
          explained.fn, x, explained.layer.threshold, steps=s.counterfactual_steps)[0]), -1),
  }
  for name in names:
    if name in batched:
      timed(name, batched[name])
  for name in (nm for nm in names if nm in SEGMENT_EXPLAINERS):
    def per_image(name=name):
      out = []
      for im, seg, f in zip(images, segments, fill):
        if name == 'lime':
          w = perturbation.lime(explained, im, seg, perturbation.background(im, 'mean', seg),
                                s.samples, rng)
        else:
          w = perturbation.kernel_shap(explained, im, seg, f, s.samples, rng)
        out.append(w[seg])
      return np.stack(out)
    timed(name, per_image)
  if 'counterfactual_rect' in names:
    found = []

    def rect():
      out = []
      for im, f in zip(images, fill):
        m, box = perturbation.rectangle_counterfactual(explained, im, f)
        out.append(m)
        found.append(box)
      return np.stack(out)
    timed('counterfactual_rect', rect)
    boxes = np.array(found)
  return {'maps': {k: maps[k] for k in names}, 'seconds': seconds, 'boxes': boxes,
          'recon': recon, 'fill_kind': fill_kind, 'blur': blur}


def measure(explained: Explained, images, masks, labels, result: dict, s: Settings) -> dict:
  """Per explainer, over the anomalous samples: pixel AUROC and AUPRO against the masks
  (pixel AUROC also over dark and bright defects apart), deletion and insertion areas (blur
  background, model-agnostic), seconds per image."""
  a = np.flatnonzero(labels == 1)
  contrast = evaluate.defect_contrast(images[a], masks[a]) if masks is not None else None
  out = {}
  for name, maps in result['maps'].items():
    row = {'seconds_per_image': result['seconds'][name]}
    if masks is not None:
      row['pixel_auroc'] = evaluate.pixel_auroc(maps[a], masks[a])
      row['aupro'] = evaluate.aupro(maps[a], masks[a])
      for key, side in (('pixel_auroc_dark', -1), ('pixel_auroc_bright', 1)):
        pick = a[contrast == side]
        row[key] = evaluate.pixel_auroc(maps[pick], masks[pick])
    deletion, insertion = evaluate.deletion_insertion(explained.score, images[a], maps[a],
                                                      result['blur'][a], s.curve_steps)
    row['deletion'], row['insertion'] = float(deletion.mean()), float(insertion.mean())
    out[name] = row
  return out


def explained_test(run):
  """(Explained, test split, labels, per-record "mask marks a region" or None): the run
  behind §3.8.5's score layer, its scale the largest raw score of the test split's
  anomalies (as the seed's)."""
  test = load_splits(run.config, run.category).test
  labels = field(test, 'label')
  raw = run.score_source(test, keep_maps=False)['score']
  layer = ScoreLayer.fit(raw, labels, run.thresholds, run.normalizer)
  return Explained(run, layer), test, labels, with_regions(test)


def explain_run(run, names_text: str, n: int, s: Settings, out_dir: str,
                progress_factory=None) -> dict:
  """Explains `n` test samples of a restored run; writes `maps.npz`, `metrics.json` and the
  Fig. 4.19-style `explanations.png` into out_dir; returns the metrics record."""
  explained, test, labels, regions = explained_test(run)
  names = choose(names_text, explained)
  idx = select(labels, regions, n, s.seed)
  images, masks = frames_at(test, idx)
  labels = labels[idx]
  progress = progress_factory(len(names) * len(idx)) if progress_factory else None
  result = explain(explained, images, names, s, progress)
  metrics = measure(explained, images, masks, labels, result, s)
  os.makedirs(out_dir, exist_ok=True)
  scores = np.asarray(explained.score(images))
  np.savez_compressed(os.path.join(out_dir, 'maps.npz'), images=images, labels=labels,
                      index=idx, scores=scores,
                      **({'masks': masks} if masks is not None else {}),
                      **{f'map_{k}': v for k, v in result['maps'].items()})
  record = {'run': run.name, 'explainers': names, 'n': int(len(idx)),
            'anomalous': int((labels == 1).sum()), 'layer': dataclasses.asdict(explained.layer),
            'background': result['fill_kind'], 'settings': dataclasses.asdict(s),
            'metrics': metrics}
  with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
    json.dump(record, f, indent=1)
  rows = list(np.flatnonzero(labels == 1)[:3]) + list(np.flatnonzero(labels == 0)[:1])
  columns = {}
  if result['recon'] is not None:
    columns['reconstruction'] = result['recon'][rows]
  columns.update({k: v[rows] for k, v in result['maps'].items()})
  boxes = result['boxes'][rows] if result['boxes'] is not None else None
  captions = [f'{"anomalous" if labels[r] else "normal"} s={scores[r]:.2f}' for r in rows]
  plots.explanations(os.path.join(out_dir, 'explanations.png'), images[rows], columns,
                     masks[rows] if masks is not None else None, captions, boxes)
  return record


# Seed 001 §4.10.2's verdicts (Fig. 4.19, pictures only), beside our measurements.
SEED_VERDICT = {
    'residual': 'ineffective: shows absence, not the anomaly',
    'lrp': 'incomprehensible, pixelated',
    'lime': 'regional, coarse',
    'shap': 'best: marks anomalies sharply',
    'counterfactual_rect': 'good, larger boxes',
}
METRICS = (('pixel_auroc', 'pixel AUROC ↑'), ('aupro', 'AUPRO ↑'),
           ('pixel_auroc_dark', 'dark defects ↑'), ('pixel_auroc_bright', 'bright defects ↑'),
           ('deletion', 'deletion ↓'), ('insertion', 'insertion ↑'),
           ('seconds_per_image', 's / image'))


def summarize(records: list[dict]) -> dict:
  """Explainer → metric → mean ± 95% CI over the runs (seeds and categories)."""
  from vadjax.eval.metrics import mean_ci
  out = {}
  for name in records[0]['metrics']:
    rows = [r['metrics'][name] for r in records if name in r['metrics']]
    out[name] = {m: mean_ci([row[m] for row in rows]) for m, _ in METRICS
                 if all(m in row and np.isfinite(row[m]) for row in rows)}
  return out


def table(summary: dict, records: list[dict]) -> str:
  """The results as a markdown table with the seed's verdict per explainer."""
  fmt = lambda v: (f'{v["mean"]:.3f}' + (f' ± {v["ci95"]:.3f}' if v['ci95'] is not None
                                         else ''))
  cols = [m for m, _ in METRICS if any(m in s for s in summary.values())]
  head = ['explainer'] + [dict(METRICS)[m] for m in cols] + ['seed 001 (Fig. 4.19)']
  lines = [f'{len(records)} run(s): {", ".join(r["run"] for r in records)}; '
           f'{records[0]["n"]} samples each ({records[0]["anomalous"]} anomalous); '
           '± = 95% CI over runs', '', '| ' + ' | '.join(head) + ' |',
           '|' + '---|' * len(head)]
  for name, s in summary.items():
    lines.append('| ' + ' | '.join([name] + [fmt(s[m]) if m in s else '–' for m in cols]
                                   + [SEED_VERDICT.get(name, '(not in the seed)')]) + ' |')
  return '\n'.join(lines)


# The seed's claim, as pairs: SHAP and counterfactuals against residual maps and LIME; and
# whether z⁺ on convolutions (EpsilonPlus) mends ε-LRP's localisation, and z^B on the
# first layer EpsilonPlus's blindness to dark pixels.
CLAIM_PAIRS = (('shap', 'residual'), ('shap', 'lime'), ('counterfactual_rect', 'residual'),
               ('counterfactual_rect', 'lime'), ('lrp_plus', 'lrp'), ('lrp_box', 'lrp_plus'))


def paired(records: list[dict]) -> str:
  """Per-run differences of the claimed pairs (a − b): mean ± 95% CI and in how many
  runs a beats b, for pixel AUROC and AUPRO."""
  from vadjax.eval.metrics import mean_ci
  lines = ['| a − b | pixel AUROC | runs a > b | AUPRO | runs a > b |', '|---|---|---|---|---|']
  for a, b in CLAIM_PAIRS:           # (no masks: no localisation metrics, no table)
    if not all(a in r['metrics'] and b in r['metrics'] and 'aupro' in r['metrics'][a]
               for r in records):
      continue
    cells = []
    for m in ('pixel_auroc', 'aupro'):
      d = [r['metrics'][a][m] - r['metrics'][b][m] for r in records]
      c = mean_ci(d)
      ci = f' ± {c["ci95"]:.3f}' if c['ci95'] is not None else ''
      cells += [f'{c["mean"]:+.3f}{ci}', f'{sum(x > 0 for x in d)}/{len(d)}']
    lines.append(f'| {a} − {b} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) if len(lines) > 2 else ''
