"""Explanations per second: our LIME and KernelSHAP (coalitions composed and scored in
jitted batches) against the `lime` and `shap` packages driving the same jitted model through
numpy, with the same superpixels, coalition counts and batch size, in one run (issue 21,
item 9). Needs the test extras (lime, shap)."""

import importlib.metadata
import logging
import time

import numpy as np

from vadjax.explain import perturbation, study
from vadjax.registry import UserError


def _packages():
  try:
    from lime import lime_image
    import shap
  except ImportError as e:
    raise UserError(f'the speed comparison needs the test extras (lime, shap): {e}') from None
  return lime_image, shap


def _timed(fn, items) -> float:
  fn(items[0])                                   # compile / warm up outside the timing
  t0 = time.perf_counter()
  for item in items:
    fn(item)
  return (time.perf_counter() - t0) / len(items)


def compare(run, n: int, samples: int) -> dict:
  """Seconds per explanation of ours and the packages' LIME and KernelSHAP on n anomalous
  test images of a run."""
  lime_image, shap = _packages()
  logging.getLogger('shap').setLevel(logging.WARNING)      # it logs every solve at INFO
  explained, test, labels, regions = study.explained_test(run)
  idx = study.select(labels, regions, n + n // 3, 0)
  images, _ = study.frames_at(test, idx[:n])
  items = [(im, perturbation.segment(im)) for im in images]
  chunk = explained.chunk
  rng = np.random.default_rng(0)

  def ours_lime(item):
    im, seg = item
    return perturbation.lime(explained, im, seg, perturbation.background(im, 'mean', seg),
                             samples, rng)

  def package_lime(item):
    im, seg = item
    rgb = np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im

    def classify(batch):
      s = np.asarray(explained.score(batch[..., :im.shape[-1]]), np.float64)
      return np.stack([1 - s, s], axis=1)
    return lime_image.LimeImageExplainer(random_state=0).explain_instance(
        rgb.astype(np.float64), classify, labels=(1,), top_labels=None, hide_color=None,
        num_features=int(seg.max()) + 1, num_samples=samples, batch_size=chunk,
        segmentation_fn=lambda _: seg)

  def ours_shap(item):
    im, seg = item
    return perturbation.kernel_shap(explained, im, seg, perturbation.background(im, 'blur'),
                                    samples, rng)

  def package_shap(item):
    im, seg = item
    fill = perturbation.background(im, 'blur')

    def f(z):
      keep = z[:, seg][..., None] > 0
      return np.asarray(explained.score(np.where(keep, im[None], fill[None])), np.float64)
    m = int(seg.max()) + 1
    return shap.KernelExplainer(f, np.zeros((1, m))).shap_values(
        np.ones((1, m)), nsamples=samples, silent=True)

  rows = {}
  for name, ours, package in (('lime', ours_lime, package_lime),
                              ('kernel_shap', ours_shap, package_shap)):
    a, b = _timed(ours, items), _timed(package, items)
    rows[name] = {'ours_s': a, 'package_s': b, 'speedup': b / a}
  return {'run': run.name, 'images': n, 'samples': samples, 'batch': chunk,
          'superpixels': [int(seg.max()) + 1 for _, seg in items],
          'image_shape': list(explained.image_shape),
          'lime_version': importlib.metadata.version('lime'),
          'shap_version': importlib.metadata.version('shap'), 'rows': rows}


def table(result: dict) -> str:
  lines = [f'{result["run"]}: {result["images"]} images {result["image_shape"]}, '
           f'{result["samples"]} coalitions, batch {result["batch"]}', '',
           '| explainer | ours (s / image) | package (s / image) | package / ours |',
           '|---|---|---|---|']
  for name, r in result['rows'].items():
    lines.append(f'| {name} | {r["ours_s"]:.3f} | {r["package_s"]:.3f} | {r["speedup"]:.2f}× |')
  return '\n'.join(lines)
