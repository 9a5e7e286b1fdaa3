"""Explanations (vadjax/explain, seed 001 §3.8): each explainer against an independent
reference (eq. 3.18 by hand, brute-force Shapley values, the lime and shap packages,
completeness), the metrics against their definitions, and the CLI on a trained run."""

import itertools
import functools
import json
import math
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import pairwise_distances

from conftest import figure
from vadjax.explain import evaluate, gradients, lrp, perturbation, study
from vadjax.explain.target import Explained, ScoreLayer
from vadjax.registry import UserError

ROOT = os.path.dirname(os.path.dirname(__file__))


class Target:
  """A score function with the interface the perturbation explainers use."""

  def __init__(self, f, chunk=16):
    self.fn, self.chunk = jax.tree_util.Partial(f), chunk

  def score(self, x):
    return jax.jit(self.fn)(jnp.asarray(x, jnp.float32))


def _stabilised(z, eps):
  return z + eps * np.where(z >= 0, 1, -1)


def test_lrp_equals_eq_3_18_by_hand_on_two_layers():
  rng = np.random.default_rng(0)
  w1, b1 = rng.normal(size=(5, 4)), rng.normal(size=4)
  w2, b2 = rng.normal(size=(4, 3)), rng.normal(size=3)
  x = rng.uniform(size=(2, 5))
  f = lambda x: jax.nn.relu(x @ w1.astype(np.float32) + b1.astype(np.float32)) \
      @ w2.astype(np.float32) + b2.astype(np.float32)
  eps = 0.01
  got = lrp.lrp(f, jnp.asarray(x, jnp.float32), f(x.astype(np.float32)), eps)
  for xi, gi in zip(x, np.asarray(got)):
    a1 = np.maximum(xi @ w1 + b1, 0)
    z1, z2 = xi @ w1 + b1, a1 @ w2 + b2
    r2 = z2                                   # the output's relevance is itself
    r1 = [sum(a1[j] * w2[j, k] / _stabilised(z2[k], eps) * r2[k] for k in range(3))
          for j in range(4)]
    r0 = [sum(xi[i] * w1[i, j] / _stabilised(z1[j], eps) * r1[j] for j in range(4))
          for i in range(5)]
    np.testing.assert_allclose(gi, r0, rtol=1e-4, atol=1e-6)


def _zplus_reference_net(rng):
  """Four layers as (kind, affine map, activation): a strided conv with BatchNorm merged
  (negative scales included), a dense layer, a dense layer straight into a transposed conv."""
  w1, b1 = rng.normal(size=(3, 3, 1, 3)), rng.normal(size=3)
  scale, shift = np.array([1.5, -0.7, 0.4]), rng.normal(size=3)
  w2, b2 = rng.normal(size=(4 * 4 * 3, 6)), rng.normal(size=6)
  w3, b3 = rng.normal(size=(6, 4 * 4 * 2)), rng.normal(size=32)
  w4, b4 = rng.normal(size=(3, 3, 2, 1)), rng.normal(size=1)
  conv = lambda a: (jax.lax.conv_general_dilated(
      a, w1, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + b1) * scale + shift
  convt = lambda a: jax.lax.conv_transpose(a.reshape(-1, 4, 4, 2), w4, (2, 2), 'SAME',
                                           dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + b4
  return [('conv', conv, lambda z: jax.nn.leaky_relu(z, 0.2)),
          ('dense', lambda a: a.reshape(a.shape[0], -1) @ w2 + b2, jax.nn.relu),
          ('dense', lambda a: a @ w3 + b3, lambda z: z),
          ('conv', convt, jax.nn.sigmoid)]


def _jit_lrp(f, x, relevance, eps, rule='epsilon'):
  """`lrp.lrp` compiled as one program (run op by op, it compiles each op apart)."""
  return jax.jit(lambda x, r: lrp.lrp(f, x, r, eps, rule))(x, relevance)


@pytest.mark.parametrize('rule', ['epsilon_plus', 'epsilon_plus_box'])
def test_epsilon_plus_equals_the_rules_on_explicit_merged_weights(rule):
  """EpsilonPlus (z⁺ on convs, ε on dense layers), and with z^B on the first layer, against
  the rules applied by hand to each layer's explicit weight matrix (its Jacobian, BatchNorm
  merged) and bias, in float64. z⁺ conserves where no bias is positive, z^B whatever the
  biases."""
  jax.config.update('jax_enable_x64', True)
  try:
    rng = np.random.default_rng(3)
    layers = _zplus_reference_net(rng)
    x = rng.uniform(-0.5, 1, size=(2, 8, 8, 1))
    lo, hi = -0.5, 1.0
    f = lambda x: functools.reduce(lambda a, l: l[2](l[1](a)), layers, x)
    relevance = rng.uniform(size=(2, 8, 8, 1))
    eps = 1e-9
    got = np.asarray(lrp.lrp(f, jnp.asarray(x), jnp.asarray(relevance), eps, rule, (lo, hi)))
    for xi, ri, gi in zip(x, relevance, got):
      acts, a = [], xi[None]
      for kind, affine, act in layers:          # forward: each layer's input
        acts.append(a)
        a = act(affine(a))
      r = ri.ravel()
      for (kind, affine, _), a in reversed(list(zip(layers, acts))):
        flat = np.asarray(a).ravel()
        fn = lambda v, a=a, affine=affine: affine(v.reshape(a.shape)).ravel()
        w = np.asarray(jax.jacobian(fn)(jnp.zeros_like(flat)))        # (out, in)
        b = np.asarray(fn(jnp.zeros_like(flat)))
        if rule == 'epsilon_plus_box' and a is acts[0]:        # z^B, the first layer
          wp, wn = np.maximum(w, 0), np.minimum(w, 0)
          low, high = np.full_like(flat, lo), np.full_like(flat, hi)
          v = r / _stabilised(w @ flat - wp @ low - wn @ high, eps)
          r = flat * (w.T @ v) - low * (wp.T @ v) - high * (wn.T @ v)
        elif kind == 'conv':
          wp, wn = np.maximum(w, 0), np.minimum(w, 0)
          ap, an = np.maximum(flat, 0), np.minimum(flat, 0)
          v = r / _stabilised(wp @ ap + wn @ an + np.maximum(b, 0), eps)
          r = ap * (wp.T @ v) + an * (wn.T @ v)
        else:
          r = flat * (w.T @ (r / _stabilised(w @ flat + b, eps)))
      np.testing.assert_allclose(gi.ravel(), r, rtol=1e-6, atol=1e-9 * np.abs(r).max())
    # conservation on a conv-only net: z⁺ with every bias ≤ 0, z^B with positive ones too
    conv_only = lambda x: jax.nn.relu(layers[0][1](x) + (5.0 if 'box' in rule else -5.0))
    out = conv_only(jnp.asarray(x))
    r = lrp.lrp(conv_only, jnp.asarray(x), out, eps, rule, (lo, hi))
    np.testing.assert_allclose(jnp.sum(r, axis=(1, 2, 3)), jnp.sum(out, axis=(1, 2, 3)),
                               rtol=1e-7)
  finally:
    jax.config.update('jax_enable_x64', False)


class _Net(nn.Module):
  """Every layer kind the rule covers, without biases (conservation holds exactly)."""

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(6, (3, 3), strides=2, use_bias=False)(x)
    h = nn.BatchNorm(use_running_average=True, use_bias=False)(h)
    h = nn.leaky_relu(h, negative_slope=0.2)
    h = nn.max_pool(h, (2, 2), (2, 2))
    h = nn.relu(nn.Dense(12, use_bias=False)(h.reshape(h.shape[0], -1)))
    h = nn.relu(nn.Dense(4 * 4 * 3, use_bias=False)(h)).reshape(-1, 4, 4, 3)
    h = nn.avg_pool(nn.ConvTranspose(4, (3, 3), strides=(2, 2), use_bias=False)(h), (1, 1))
    return nn.sigmoid(nn.Conv(1, (1, 1), use_bias=False)(h))


def test_lrp_conserves_relevance_without_biases():
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 16, 16, 1))
  net = _Net()
  v = net.init(jax.random.PRNGKey(1), x)
  v = jax.tree_util.tree_map_with_path(
      lambda p, a: a + 0.5 if 'var' in jax.tree_util.keystr(p) else a, v)
  f = lambda x: net.apply(v, x)
  out = jnp.square(f(x) - 0.5)
  r = _jit_lrp(f, x, out, 1e-9)
  np.testing.assert_allclose(jnp.sum(r, axis=(1, 2, 3)), jnp.sum(out, axis=(1, 2, 3)),
                             rtol=2e-3)
  # ε absorbs relevance: a large ε loses some
  r_big = _jit_lrp(f, x, out, 1.0)
  assert float(jnp.abs(r_big).sum()) < 0.9 * float(jnp.abs(r).sum())


def test_lrp_follows_the_plain_layers_whatever_the_conv_form():
  from vadjax.models import MODELS
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 1))
  forms = [MODELS.get('bcae1')(filters=(4, 4, 4, 8, 8), conv_impl=impl)
           for impl in ('xla', 's2d')]
  v = forms[0].init(jax.random.PRNGKey(1), x, train=False)
  maps = []
  for m in forms:
    f = lambda x, m=m: m.apply(v, x, train=False)['recon']
    maps.append(np.asarray(jax.jit(lambda x, f=f: lrp.lrp(f, x, jnp.square(f(x) - x), 1e-6))(x)))
  assert np.abs(maps[0]).max() > 0
  np.testing.assert_allclose(maps[1], maps[0], rtol=1e-3, atol=1e-3 * np.abs(maps[0]).max())


class _Forms(nn.Module):
  """A strided conv, BatchNorm, a dense layer and a transposed conv in a chosen form."""
  impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    from vadjax.nn import Conv, ConvTranspose
    h = Conv(6, 3, 2, 1, impl=self.impl, dtype=jnp.float64)(x)
    h = nn.leaky_relu(nn.BatchNorm(use_running_average=True, dtype=jnp.float64)(h), 0.2)
    h = nn.relu(nn.Dense(5, dtype=jnp.float64)(h.reshape(h.shape[0], -1)))
    h = nn.Dense(8 * 8 * 4, dtype=jnp.float64)(h).reshape(-1, 8, 8, 4)
    return nn.sigmoid(ConvTranspose(1, 4, 2, 1, impl=self.impl, dtype=jnp.float64)(h))


def test_epsilon_plus_follows_the_plain_layers_whatever_the_conv_form():
  """A conv in its CPU form (space-to-depth, one matmul) still gets z⁺, not the dense
  layers' ε: the maps equal the plain layers' (float64: rounding at s ≈ 0 is no form's)."""
  jax.config.update('jax_enable_x64', True)
  try:
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 1), jnp.float64)
    v = _Forms().init(jax.random.PRNGKey(1), x)
    v = jax.tree_util.tree_map_with_path(      # BatchNorm statistics and a negative scale
        lambda p, a: a - 0.8 if 'scale' in jax.tree_util.keystr(p) else a + 0.3, v)
    # the variables are the program's arguments: as float64 constants, YNNPACK's dot fusion
    # made some compilations of the gemm form return garbage (~1e240; BUILD_NOTES.md)
    def lrp_map(impl, rule):
      return np.asarray(jax.jit(lambda v, x: lrp.lrp(lambda x: _Forms(impl).apply(v, x), x, x,
                                                     1e-9, rule))(v, x))
    maps = {impl: lrp_map(impl, 'epsilon_plus') for impl in ('xla', 's2d', 'gemm')}
    assert np.abs(maps['xla']).max() > 0
    for impl in ('s2d', 'gemm'):
      np.testing.assert_allclose(maps[impl], maps['xla'], rtol=1e-6,
                                 atol=1e-7 * np.abs(maps['xla']).max(), err_msg=impl)
    eps = lrp_map('gemm', 'epsilon')
    assert np.abs(eps - maps['xla']).max() > 0.05 * np.abs(maps['xla']).max()  # another rule
  finally:
    jax.config.update('jax_enable_x64', False)


def _block_image(m_rows=2, m_cols=4, side=8, channels=1, seed=0):
  rng = np.random.default_rng(seed)
  image = rng.uniform(size=(side, side, channels)).astype(np.float32)
  rows = np.repeat(np.arange(m_rows), side // m_rows)
  cols = np.repeat(np.arange(m_cols), side // m_cols)
  segments = (rows[:, None] * m_cols + cols[None]).astype(np.int32)
  return image, segments


def _nonlinear_score(x):
  """A score with interactions between regions, in [0, 1]."""
  a = jnp.mean(x[:, :4, :4], axis=(1, 2, 3))
  b = jnp.mean(x[:, 4:, 2:6], axis=(1, 2, 3))
  c = jnp.mean(x[:, :, 6:], axis=(1, 2, 3))
  return jax.nn.sigmoid(3 * a * b - 2 * c + jnp.sin(4 * b))


def _brute_force_shapley(target, image, fill, segments):
  """φ_i = Σ_{S ⊆ N∖{i}} |S|!(M − |S| − 1)!/M! (v(S ∪ {i}) − v(S)), v from every coalition."""
  m = int(segments.max()) + 1
  z = np.array(list(itertools.product((0, 1), repeat=m)))
  v = dict(zip(map(tuple, z), perturbation.coalition_scores(target, image, fill, segments, z)))
  phi = np.zeros(m)
  for row in z:
    for i in np.flatnonzero(row == 0):
      size = int(row.sum())
      w = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
      with_i = row.copy()
      with_i[i] = 1
      phi[i] += w * (v[tuple(with_i)] - v[tuple(row)])
  return phi


def test_kernel_shap_is_exact_with_every_coalition():
  image, segments = _block_image()
  fill = perturbation.background(image, 'black')
  target = Target(_nonlinear_score)
  m = int(segments.max()) + 1
  want = _brute_force_shapley(target, image, fill, segments)
  got = perturbation.kernel_shap(target, image, segments, fill, 2 ** m,
                                 np.random.default_rng(0))
  np.testing.assert_allclose(got, want, atol=1e-6)
  # efficiency: φ sums to f(x) − f(∅)
  assert abs(got.sum() - (float(target.score(image[None])[0])
                          - float(target.score(fill[None])[0]))) < 1e-6


def test_kernel_shap_sampled_is_close_to_the_exact_values():
  image, segments = _block_image(m_rows=3, m_cols=4, side=12)
  fill = perturbation.background(image, 'blur')
  target = Target(lambda x: _nonlinear_score(x[:, ::12 // 8, ::12 // 8][:, :8, :8]))
  assert len(perturbation.coalitions(12, 2000, np.random.default_rng(0))[0]) == 2000  # sampled
  want = _brute_force_shapley(target, image, fill, segments)
  got = perturbation.kernel_shap(target, image, segments, fill, 2000,
                                 np.random.default_rng(0))
  assert np.abs(got - want).max() < 0.1 * np.abs(want).max(), (got, want)


def test_kernel_shap_agrees_with_the_shap_package():
  shap = pytest.importorskip('shap')
  image, segments = _block_image()
  fill = perturbation.background(image, 'blur')
  target = Target(_nonlinear_score)
  m = int(segments.max()) + 1
  f = lambda z: perturbation.coalition_scores(target, image, fill, segments, z)
  ref = shap.KernelExplainer(f, np.zeros((1, m))).shap_values(np.ones((1, m)),
                                                              nsamples=2 ** m, silent=True)
  got = perturbation.kernel_shap(target, image, segments, fill, 2 ** m,
                                 np.random.default_rng(0))
  np.testing.assert_allclose(got, np.ravel(ref), atol=1e-6)


def test_lime_agrees_with_the_lime_package():
  lime_image = pytest.importorskip('lime.lime_image')
  image, segments = _block_image(channels=3)
  target = Target(_nonlinear_score)

  def classify(batch):
    s = np.asarray(target.score(batch), np.float64)
    return np.stack([1 - s, s], axis=1)
  explainer = lime_image.LimeImageExplainer(random_state=0)
  fill = perturbation.background(image, 'mean', segments)
  lime_fill = image.copy()
  for s in np.unique(segments):        # lime's hide_color=None: each superpixel's mean
    lime_fill[segments == s] = image[segments == s].mean(axis=0)
  np.testing.assert_allclose(fill, lime_fill, atol=1e-6)
  black = np.zeros_like(image)        # (mean colours keep this score's block means)
  data, labels = explainer.data_labels(image, black, segments, classify, 300, 50)
  ours = perturbation.coalition_scores(target, image, black, segments, data)
  np.testing.assert_allclose(ours, labels[:, 1], atol=1e-6)
  distances = pairwise_distances(data, data[:1], metric='cosine').ravel()
  weights = perturbation.lime_weights(data)
  np.testing.assert_allclose(weights, np.sqrt(np.exp(-distances ** 2 / 0.25 ** 2)), atol=1e-9)
  _, exp, _, _ = explainer.base.explain_instance_with_data(
      data, labels, distances, 1, data.shape[1], feature_selection='auto')
  ref = np.zeros(data.shape[1])
  for k, w in exp:
    ref[k] = w
  assert np.abs(ref).max() > 1e-3
  np.testing.assert_allclose(perturbation.lime_surrogate(data, ours, weights), ref,
                             rtol=1e-6, atol=1e-9)


def test_gradient_explainers_against_their_definitions():
  w = jax.random.normal(jax.random.PRNGKey(0), (8, 8, 1))
  linear = jax.tree_util.Partial(lambda x: jnp.sum(x * w, axis=(1, 2, 3)))
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 8, 1))
  np.testing.assert_allclose(gradients.gradient_x_input(linear, x), (x * w)[..., 0], rtol=1e-5)
  f = jax.tree_util.Partial(_nonlinear_score)
  base = jnp.zeros_like(x)
  ig = gradients.integrated_gradients(f, x, base, steps=64)
  # completeness: Σ IG = f(x) − f(baseline), to the midpoint rule's error
  np.testing.assert_allclose(ig.sum(axis=(1, 2)), f(x) - f(base), rtol=1e-3, atol=1e-5)


def test_counterfactuals_find_the_region_that_raises_the_score():
  region = (slice(8, 16), slice(16, 24))
  f = lambda x: jnp.clip(4 * jnp.mean(x[:, region[0], region[1]], axis=(1, 2, 3)), 0, 1)
  target = Target(f)
  image = np.full((32, 32, 1), 0.05, np.float32)
  image[region] = 0.2                                        # the "anomaly": score 0.8
  _, (top, left, side) = perturbation.rectangle_counterfactual(target, image,
                                                               np.zeros_like(image))
  assert side == 8 and (top, left) == (8, 16)
  delta, after = gradients.counterfactual(target.fn, jnp.asarray(image[None]), 0.5, steps=300)
  assert float(after[0]) < 0.5
  changed = np.abs(np.asarray(delta[0, ..., 0])) > 1e-3
  assert changed[region].mean() > 0.9 and changed.sum() <= changed[region].size


def _aupro_by_definition(maps, masks, max_fpr=0.3):
  """At every distinct value of the per-image scaled maps: FPR over all normal pixels and
  the mean overlap of the 8-connected regions; trapezoids up to max_fpr, interpolated."""
  from skimage import measure
  scaled = [(m - m.min()) / (m.max() - m.min()) for m in maps]
  labels = [measure.label(k > 0.5, connectivity=2) for k in masks]
  regions = [s[lab == r] for s, lab in zip(scaled, labels) for r in range(1, lab.max() + 1)]
  normal = np.concatenate([s[k < 0.5] for s, k in zip(scaled, masks)])
  fprs, pros = [0.0], [0.0]
  for t in np.unique(np.concatenate([s.ravel() for s in scaled]))[::-1]:
    fprs.append((normal >= t).mean())
    pros.append(np.mean([(r >= t).mean() for r in regions]))
  fprs, pros = np.array(fprs), np.array(pros)
  xs = np.r_[fprs[fprs < max_fpr], max_fpr]
  ys = np.r_[pros[fprs < max_fpr], np.interp(max_fpr, fprs, pros)]
  return np.trapezoid(ys, xs) / max_fpr


def test_aupro_and_pixel_auroc():
  rng = np.random.default_rng(0)
  masks = np.zeros((3, 32, 32))
  masks[0, 4:10, 4:10] = masks[0, 20:24, 2:30] = masks[1, 10:20, 10:12] = 1
  masks[2, 0:3, 0:3] = 1
  noisy = masks + rng.normal(0, 0.6, masks.shape)
  assert evaluate.aupro(noisy, masks) == pytest.approx(_aupro_by_definition(noisy, masks),
                                                       abs=1e-3)
  assert evaluate.aupro(masks + 0.01 * rng.uniform(size=masks.shape), masks) > 0.99
  random = [evaluate.aupro(rng.uniform(size=masks.shape), masks) for _ in range(5)]
  assert np.mean(random) == pytest.approx(0.15, abs=0.03)      # (0.3²/2)/0.3 by chance
  assert evaluate.pixel_auroc(masks, masks) == 1.0
  assert evaluate.pixel_auroc(-masks, masks) == 0.0


def test_defect_contrast_sorts_dark_from_bright_defects():
  """A defect brighter than the 3-pixel ring around it is +1, a darker one −1, none 0
  (the surroundings beyond the ring do not count)."""
  images = np.full((4, 16, 16, 3), 0.5)
  masks = np.zeros((4, 16, 16))
  masks[:3, 6:9, 6:9] = 1
  images[0, 6:9, 6:9] = 0.9                      # bright defect
  images[1, 6:9, 6:9] = 0.1                      # dark defect
  images[2, 6:9, 6:9], images[2, :2] = 0.4, 0.0  # darker than its ring, not than the edge
  assert list(evaluate.defect_contrast(images, masks)) == [1, -1, -1, 0]


def test_deletion_ranks_a_faithful_map_first():
  region = (slice(0, 8), slice(0, 8))
  score = jax.jit(lambda x: jnp.mean(x[:, region[0], region[1]], axis=(1, 2, 3)))
  images = np.ones((2, 16, 16, 1), np.float32)
  good = np.zeros((2, 16, 16))
  good[:, region[0], region[1]] = 1
  d_good, i_good = evaluate.deletion_insertion(score, images, good, np.zeros_like(images))
  d_bad, i_bad = evaluate.deletion_insertion(score, images, -good, np.zeros_like(images))
  assert (d_good < 0.2).all() and (d_bad > 0.7).all()
  assert (i_good > 0.8).all() and (i_bad < 0.3).all()


@pytest.fixture(scope='module')
def textures_run(tmp_path_factory):
  """BCAE1 on textures (brick) at 32², two epochs."""
  from experiments.configs import reconstruction
  from vadjax.train import restore, train_and_evaluate
  workdir = tmp_path_factory.mktemp('explain_run')
  c = reconstruction.get_config('quick,dataset=textures,image_size=32')
  c.unlock()
  c.model_kwargs.filters = (8, 8, 8, 16, 16)
  c.num_devices = 1
  c.lock()
  train_and_evaluate(c, str(workdir))
  return workdir, restore(str(workdir))


def test_score_layer_is_the_runs_score_over_the_largest_anomaly(textures_run):
  _, run = textures_run
  explained, test, labels, regions = study.explained_test(run)
  images, masks = study.frames_at(test, range(len(test)))
  assert regions.tolist() == (masks.reshape(len(masks), -1).max(1) > 0.5).tolist()
  raw = np.asarray(run.score(images)['score'])
  assert explained.layer.scale == pytest.approx(raw[labels == 1].max(), rel=1e-6)
  np.testing.assert_allclose(explained.score(images[:20]),
                             np.clip(raw[:20] / explained.layer.scale, 0, 1), rtol=1e-5)
  assert 0 < explained.layer.threshold < 1 and masks is not None
  with pytest.raises(UserError, match='shape'):
    explained.check(images[:, :16])


def test_explain_cli_writes_maps_metrics_and_the_figure(textures_run, tmp_path):
  workdir, _ = textures_run
  proc = subprocess.run([sys.executable, '-m', 'experiments.explain', f'--workdir={workdir}',
                         '--n=4', '--samples=64', f'--out={tmp_path}', '--noprogress'],
                        capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert '| lrp |' in proc.stdout and '| shap |' in proc.stdout
  with open(tmp_path / 'explanations.json') as f:
    summary = json.load(f)['summary']
  assert set(summary) == set(study.EXPLAINERS)
  for name, row in summary.items():
    assert 0 <= row['pixel_auroc']['mean'] <= 1 and 0 <= row['aupro']['mean'] <= 1, name
    assert 0 <= row['deletion']['mean'] <= 1 and row['seconds_per_image']['mean'] > 0
  assert summary['residual']['pixel_auroc']['mean'] > 0.8
  run_dir = tmp_path / 'brick' / 'seed0'
  maps = np.load(run_dir / 'maps.npz')
  assert maps['map_shap'].shape == maps['masks'].shape == (4, 32, 32)
  figure(run_dir / 'explanations.png')


def test_explain_cli_errors_are_one_line(textures_run, tmp_path):
  workdir, _ = textures_run
  for args, message in (([f'--workdir={tmp_path}'], 'holds no experiment'),
                        ([f'--workdir={workdir}', '--explainers=lrp,magic'],
                         'unknown explainer')):
    proc = subprocess.run([sys.executable, '-m', 'experiments.explain', *args,
                           f'--out={tmp_path}/out'], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        'error: ') and message in proc.stderr, proc.stderr[-1000:]


def _untrained_run(config_module: str, arg: str):
  """A run of a config with initial weights (the explainers' plumbing does not need
  training)."""
  import importlib
  from vadjax.train.experiment import Experiment, TrainedRun
  c = importlib.import_module(f'experiments.configs.{config_module}').get_config(arg)
  c.unlock()
  c.num_devices = 1
  c.lock()
  exp = Experiment(c)
  patches = c.data.patches.size
  side = patches if patches else c.image_size
  shape = (side, side, 1 if c.dataset != 'textures' else 1)
  steps = exp.steps(shape)
  return TrainedRun(exp, '0', 0, '', shape, steps, steps.init(jax.random.PRNGKey(0)),
                    {'thresholds': {}, 'normalizer': {'low': 0.0, 'high': 1.0}})


@pytest.mark.parametrize('config_module,arg,refused', [
    ('memae', 'quick', {'lrp', 'lrp_plus', 'lrp_box'}),
    ('ssim_cae', 'quick', set()),
    ('alps', 'quick', {'lrp', 'lrp_plus', 'lrp_box'}),   # one decoder call, clean and distorted
    ('alps', 'walkway,quick', {'lrp', 'lrp_plus', 'lrp_box'}),      # the patch protocol
    ('adacl', 'quick', {'residual'}),
])
def test_every_image_method_is_explained_through_its_own_score(config_module, arg, refused):
  run = _untrained_run(config_module, arg)
  explained = Explained(run, ScoreLayer(1e-3, 0.5))
  assert set(study.EXPLAINERS) - set(study.choose('all', explained)) == refused
  for name in refused:          # the reason named: MemAE's memory divides by data
    with pytest.raises(UserError, match=f"'{name}' does not apply.*"
                       + ('no rule for .*div' if config_module == 'memae' else '')):
      study.choose(name, explained)
  with pytest.raises(UserError, match='no explainer named'):
    study.choose(' , ', explained)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, *explained.image_shape))
  frames = np.asarray(x)
  if explained.kind == 'patches':       # the run scores patch stacks of the frame
    from vadjax.serving.predict import patch_corners
    size = run.config.data.patches.size
    frames = np.stack([frames[:, y:y + size, c:c + size] for y, c in patch_corners(run)], 1)
  raw = run.score(frames)['score']
  np.testing.assert_allclose(explained.score(x), np.clip(raw / 1e-3, 0, 1), rtol=1e-5)
  g = gradients.gradient_x_input(explained.fn, x)
  assert g.shape == (2, *explained.image_shape[:2]) and np.isfinite(g).all()
  if 'residual' not in refused:       # patch runs: the top patch's map, placed in the frame
    r = explained.residual(x)
    assert r.shape == g.shape and (r > 0).any()
    if explained.kind == 'patches':
      size = run.config.data.patches.size
      assert ((r > 0).sum(axis=(1, 2)) <= size * size).all()


def test_clip_models_are_refused_with_a_clear_error():
  from experiments.configs import conv_rnn
  from vadjax.train.experiment import Experiment, TrainedRun
  c = conv_rnn.get_config('quick')
  exp = Experiment(c)
  shape = (c.data.video.clip_length, c.image_size, c.image_size, 1)
  run = TrainedRun(exp, '0', 0, '', shape, None, None, {})
  with pytest.raises(UserError, match='explain image models; this run scores clips'):
    Explained(run, ScoreLayer(1.0, 0.5))


def test_tables_without_masks_have_no_localisation_columns():
  metrics = {n: {'seconds_per_image': 0.1, 'deletion': 0.4, 'insertion': 0.6}
             for n in study.EXPLAINERS}
  records = [{'run': f'digits/1/seed{k}', 'n': 4, 'anomalous': 3, 'metrics': metrics}
             for k in range(2)]
  table = study.table(study.summarize(records), records)
  assert 'AUPRO' not in table and '| shap | 0.400 ± 0.000 | 0.600 ± 0.000 |' in table
  assert study.paired(records) == ''


def test_paired_rows_are_per_run_differences():
  rng = np.random.default_rng(0)
  records = [{'run': f'textures/brick/seed{k}', 'metrics': {
      n: {'pixel_auroc': float(rng.uniform()), 'aupro': float(rng.uniform())}
      for n in study.EXPLAINERS}} for k in range(4)]
  rows = {line.split(' | ')[0].strip('| '): line.split(' | ')[1:]
          for line in study.paired(records).splitlines()[2:]}
  assert set(rows) == {f'{a} − {b}' for a, b in study.CLAIM_PAIRS} and 'lrp_plus − lrp' in rows
  d = [r['metrics']['lrp_plus']['pixel_auroc'] - r['metrics']['lrp']['pixel_auroc']
       for r in records]
  assert rows['lrp_plus − lrp'][0].startswith(f'{np.mean(d):+.3f} ± ')
  assert rows['lrp_plus − lrp'][1] == f'{sum(x > 0 for x in d)}/4'


def test_speed_mode_times_ours_and_the_packages(textures_run):
  pytest.importorskip('lime')
  pytest.importorskip('shap')
  from vadjax.explain import speed
  _, run = textures_run
  result = speed.compare(run, 1, 16)
  assert set(result['rows']) == {'lime', 'kernel_shap'}
  for row in result['rows'].values():
    assert row['ours_s'] > 0 and row['package_s'] > 0
    assert row['speedup'] == pytest.approx(row['package_s'] / row['ours_s'])
  assert result['shap_version'] and result['lime_version']
  assert '| kernel_shap |' in speed.table(result)
