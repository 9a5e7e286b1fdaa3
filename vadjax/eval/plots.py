"""Matplotlib figures written into run directories (Agg backend, no display needed)."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.patches  # noqa: E402
import numpy as np  # noqa: E402

from vadjax.eval import metrics  # noqa: E402


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def roc_pr(path, labels, scores) -> str:
  fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
  fpr, tpr, _ = metrics.roc_curve(labels, scores)
  a.plot(fpr, tpr, label=f'AUROC {metrics.auroc(labels, scores):.4f}')
  a.plot([0, 1], [0, 1], 'k:', lw=0.8)
  a.set(xlabel='false positive rate', ylabel='true positive rate', title='ROC')
  p, r, _ = metrics.pr_curve(labels, scores)
  b.step(np.r_[0, r], np.r_[1, p], where='pre', label=f'AUPR {metrics.aupr(labels, scores):.4f}')
  b.set(xlabel='recall', ylabel='precision', title='precision–recall (anomaly positive)')
  a.legend(loc='lower right')
  b.legend(loc='lower left')
  return _save(fig, path)


def pixel_roc_pro(path, fpr, tpr, pro_fpr, pro, limit: float) -> str:
  """Pixel-level ROC and per-region overlap against the false-positive rate (the AUPRO
  curve, shaded up to `limit`), from the statistics of vadjax/eval/pixel.py."""
  from vadjax.eval.pixel import integrate_to
  fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
  a.plot(fpr, tpr, label=f'pixel AUROC {np.trapezoid(tpr, fpr):.4f}')
  a.plot([0, 1], [0, 1], 'k:', lw=0.8)
  a.set(xlabel='false positive rate (pixels)', ylabel='true positive rate (pixels)',
        title='pixel ROC')
  b.plot(pro_fpr, pro, label=f'AUPRO@{limit:g} {integrate_to(pro_fpr, pro, limit) / limit:.4f}')
  inside = pro_fpr <= limit
  b.fill_between(pro_fpr[inside], pro[inside], alpha=0.2)
  b.axvline(limit, color='k', ls=':', lw=0.8)
  b.set(xlabel='false positive rate (pixels)', ylabel='per-region overlap',
        title='PRO curve (MVTec AD)')
  a.legend(loc='lower right')
  b.legend(loc='lower right')
  return _save(fig, path)


def histogram(path, labels, scores, thresholds: dict) -> str:
  labels, scores = np.asarray(labels), np.asarray(scores)
  fig, ax = plt.subplots(figsize=(7, 4))
  bins = np.linspace(min(scores.min(), 0), max(scores.max(), 1), 50)
  ax.hist(scores[labels == 0], bins, alpha=0.6, label='normal', density=True)
  ax.hist(scores[labels == 1], bins, alpha=0.6, label='anomalous', density=True)
  for i, (name, t) in enumerate(thresholds.items()):
    ax.axvline(t, color=f'C{i + 2}', ls='--', lw=1, label=f'threshold {name}')
  ax.set(xlabel='normalised anomaly score', ylabel='density', title='test scores')
  ax.legend(fontsize=8)
  return _save(fig, path)


def recon_grid(path, images, recons, pixel, masks=None) -> str:
  rows = ['input', 'reconstruction', 'error map'] + (['ground truth'] if masks is not None
                                                     else [])
  n = len(images)
  fig, axes = plt.subplots(len(rows), n, figsize=(1.4 * n, 1.5 * len(rows)), squeeze=False)
  for j in range(n):
    pics = [images[j], recons[j], pixel[j]] + ([masks[j]] if masks is not None else [])
    for i, pic in enumerate(pics):
      pic = np.asarray(pic)
      if pic.ndim == 3 and pic.shape[-1] == 1:
        pic = pic[..., 0]
      kw = {'cmap': 'gray', 'vmin': 0, 'vmax': 1} if i < 2 else {'cmap': 'inferno'}
      axes[i, j].imshow(np.clip(pic, 0, 1) if i < 2 else pic, **kw)
      axes[i, j].set_xticks([])
      axes[i, j].set_yticks([])
  for i, r in enumerate(rows):
    axes[i, 0].set_ylabel(r, fontsize=8)
  return _save(fig, path)


def training_curves(path, history: list[dict]) -> str:
  ep = [h['epoch'] for h in history]
  fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
  a.semilogy(ep, [h['train_loss'] for h in history], label='train')
  if 'val_loss' in history[0]:
    a.semilogy(ep, [h['val_loss'] for h in history], label='validation')
  a.set(xlabel='epoch', ylabel='loss', title='loss')
  a.legend()
  if 'val_auroc' in history[0]:        # methods validated by AUROC (ADACL)
    c = a.twinx()
    c.plot(ep, [h['val_auroc'] for h in history], color='C2', label='validation AUROC')
    c.set(ylabel='validation AUROC', ylim=(0, 1))
    c.legend(loc='lower right')
  b.semilogy(ep, [h['learning_rate'] for h in history])
  b.set(xlabel='epoch', ylabel='learning rate', title='learning rate')
  return _save(fig, path)


def score_timelines(path, scores, labels, videos, max_videos: int = 8, smoothed=None) -> str:
  """Per test video: the per-video normalised score over frames, anomalous frames shaded;
  `smoothed`: also seed 001's Savitzky–Golay smoothed 1 − s(t)."""
  ids = list(np.unique(videos))[:max_videos]
  fig, axes = plt.subplots(len(ids), 1, figsize=(8, 1.4 * len(ids)), squeeze=False)
  for ax, v in zip(axes[:, 0], ids):
    s, lab = np.asarray(scores)[videos == v], np.asarray(labels)[videos == v]
    ax.fill_between(np.arange(len(lab)), 0, 1, where=lab > 0, color='C3', alpha=0.25, step='mid',
                    label='anomalous frames')
    ax.plot(s, color='C0', lw=1, label='score (per-video min-max)')
    if smoothed is not None:
      ax.plot(np.asarray(smoothed)[videos == v], color='k', lw=1.2,
              label='1 − s(t), Savitzky–Golay')
    ax.set(ylim=(0, 1), xlim=(0, len(lab) - 1), ylabel=f'video {v}')
  axes[0, 0].legend(fontsize=7, loc='upper right')
  axes[-1, 0].set_xlabel('frame')
  return _save(fig, path)


def image_grid(path, images, title: str, columns: int = 10, captions=None) -> str:
  """A grid of images (N, H, W[, C]) in [0, 1] (e.g. MemAE's decoded memory items), with an
  optional caption under each."""
  n = len(images)
  rows = -(-n // columns)
  tall = 0.35 if captions is not None else 0
  fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * (0.9 + tall) + 0.4),
                           squeeze=False)
  for i, ax in enumerate(axes.ravel()):
    ax.axis('off')
    if i < n:
      pic = np.clip(np.asarray(images[i]), 0, 1)
      if pic.ndim == 3 and pic.shape[-1] == 3:
        ax.imshow(pic)
      else:
        ax.imshow(pic[..., 0] if pic.ndim == 3 else pic, cmap='gray', vmin=0, vmax=1)
      if captions is not None:
        ax.set_title(captions[i], fontsize=6)
  fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def metric_vs(path, xs, per_seed, xlabel: str, ylabel: str, title: str) -> str:
  """A metric against a swept setting (log x axis): every seed's value and their mean."""
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for x, values in zip(xs, per_seed):
    ax.scatter([x] * len(values), values, color='C0', alpha=0.5, s=14)
  ax.plot(xs, [np.mean(v) for v in per_seed], color='C0', marker='o', label='mean over seeds')
  ax.set_xscale('log')
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
  ax.title.set_fontsize(9)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def attention_maps(path, images, maps: dict, labels=None) -> str:
  """Inputs (N, H, W[, C]) and, per named map, (N, h, w) attention drawn over the input's
  extent (maps are coarser than the input for most blocks)."""
  n, names = len(images), list(maps)
  fig, axes = plt.subplots(1 + len(names), n, figsize=(1.4 * n, 1.5 * (1 + len(names))),
                           squeeze=False)
  for j in range(n):
    pic = np.asarray(images[j])
    pic = pic[..., 0] if pic.ndim == 3 and pic.shape[-1] == 1 else pic
    axes[0, j].imshow(np.clip(pic, 0, 1), cmap='gray', vmin=0, vmax=1)
    if labels is not None:
      axes[0, j].set_title('anomalous' if labels[j] else 'normal', fontsize=7)
    for i, name in enumerate(names, start=1):
      axes[i, j].imshow(np.asarray(maps[name][j]), cmap='viridis')
    for ax in axes[:, j]:
      ax.set_xticks([])
      ax.set_yticks([])
  axes[0, 0].set_ylabel('input', fontsize=8)
  for i, name in enumerate(names, start=1):
    axes[i, 0].set_ylabel(f'attention {name}', fontsize=8)
  return _save(fig, path)


def explanations(path, images, columns: dict, masks=None, captions=None, boxes=None) -> str:
  """Seed 001 Fig. 4.19's layout: one row per sample, the input (its defect mask outlined
  in red), then one column per named picture (N, H, W[, C]): the reconstruction in grey,
  every map in a diverging colour scale centred on 0 (red raises the anomaly score);
  `boxes` (N, 3) top, left, side draw the rectangle counterfactual's square on its column."""
  n, names = len(images), list(columns)
  fig, axes = plt.subplots(n, 1 + len(names), figsize=(1.35 * (1 + len(names)), 1.45 * n),
                           squeeze=False)
  grey = lambda a: np.clip(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a, 0, 1)
  for i in range(n):
    axes[i, 0].imshow(grey(np.asarray(images[i])), cmap='gray', vmin=0, vmax=1)
    if masks is not None and np.asarray(masks[i]).any():
      axes[i, 0].contour(np.asarray(masks[i]) > 0.5, levels=[0.5], colors='red', linewidths=0.6)
    if captions is not None:
      axes[i, 0].set_ylabel(captions[i], fontsize=6)
    for j, name in enumerate(names, start=1):
      pic = np.asarray(columns[name][i], np.float64)
      if name == 'reconstruction':
        axes[i, j].imshow(grey(pic), cmap='gray', vmin=0, vmax=1)
      else:
        pic = np.where(np.isfinite(pic), pic, 0.0)
        top = max(float(np.abs(pic).max()), 1e-12)
        axes[i, j].imshow(pic, cmap='bwr', vmin=-top, vmax=top)
      if boxes is not None and name == 'counterfactual_rect':
        t, l, side = boxes[i]
        axes[i, j].add_patch(matplotlib.patches.Rectangle((l - 0.5, t - 0.5), side, side,
                                                          fill=False, color='black', lw=0.8))
  for j, name in enumerate(['input'] + names):
    axes[0, j].set_title(name.replace('_', ' '), fontsize=7)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  return _save(fig, path)


def tsne(path, embeddings: dict) -> str:
  """Seed 004's t-SNE figures, one row per named feature set: per-frame features (normal /
  anomalous frames) and per-video max-aggregated features (videos with / without an
  anomaly); each value from vadjax.eval.tsne.embeddings."""
  fig, axes = plt.subplots(len(embeddings), 2, figsize=(9, 4 * len(embeddings)),
                           squeeze=False)
  for row, (title, emb) in zip(axes, embeddings.items()):
    for ax, key in zip(row, ('frames', 'videos')):
      xy, lab = emb[key], np.asarray(emb[key[:-1] + '_labels'])
      for value, name, color in ((0, 'normal', 'C0'), (1, 'anomalous', 'C3')):
        pick = lab == value
        ax.scatter(xy[pick, 0], xy[pick, 1], s=4 if key == 'frames' else 30, c=color,
                   label=f'{name} ({pick.sum()})', alpha=0.6)
      ax.set(title=f'{title}: {key}', xticks=[], yticks=[])
      ax.legend(fontsize=7)
  return _save(fig, path)


def dino_curves(path, history: list[dict], probes: list[dict] = ()) -> str:
  """DINO pretraining: the loss, the collapse monitors and (when given) the k-NN probe's
  accuracy against steps."""
  fig, axes = plt.subplots(1, 4 if probes else 3, figsize=(16 if probes else 12, 3.2))
  steps = [h['step'] for h in history]
  axes[0].plot(steps, [h['loss'] for h in history])
  axes[0].set(xlabel='step', title='DINO loss')
  for k in ('teacher_entropy', 'teacher_batch_entropy'):
    axes[1].plot(steps, [h[k] for h in history], label=k)
  axes[1].set(xlabel='step', title='teacher entropies (nats)')
  axes[1].legend(fontsize=7)
  axes[2].plot(steps, [h['feature_std'] for h in history])
  axes[2].set(xlabel='step', title='feature spread (std of normalised cls)')
  if probes:
    axes[3].plot([p['step'] for p in probes], [p['knn_accuracy'] for p in probes], 'o-')
    axes[3].axhline(probes[0]['knn_accuracy'], ls=':', c='grey', label='random ViT (step 0)')
    axes[3].set(xlabel='step', title='k-NN accuracy, digits (teacher cls)')
    axes[3].legend(fontsize=7)
  return _save(fig, path)
