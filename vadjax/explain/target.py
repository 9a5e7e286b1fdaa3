"""What the explainers explain: a restored image run as a function of images.

Seed 001 §3.8.5 turns an autoencoder into something a classifier explainer can explain: the
raw anomaly score divided by the largest raw score of the anomalous samples (so in [0, 1]),
with the G-mean optimum (eq. 3.21) as the decision threshold in that space. `ScoreLayer` is
that parameter-free layer; `Explained` puts it behind the run's own scoring (the method's
score, patches cut and max-reduced as evaluation does), so that every explainer sees the
score evaluation reports. LIME and SHAP explain the layer's output; ε-LRP explains the
model directly (the squared reconstruction error it makes, or a regressor's output), as
the seed does (§4.10.1).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vadjax.eval import thresholds as thr
from vadjax.registry import UserError
from vadjax.serving.predict import frame_scorer, input_kind, patch_corners


@dataclasses.dataclass(frozen=True)
class ScoreLayer:
  """§3.8.5: s = clip(raw / largest anomalous raw score, 0, 1); `threshold` in s."""
  scale: float
  threshold: float

  def __call__(self, raw):
    return jnp.clip(raw / self.scale, 0.0, 1.0)

  @classmethod
  def fit(cls, raw, labels, run_thresholds: dict, normalizer) -> 'ScoreLayer':
    """The scale from the anomalous samples' raw scores (all samples when none is
    anomalous); the threshold is the run's G-mean threshold (fitted on its validation
    split) mapped into s, or eq. 3.21 on these samples when the run has none."""
    raw, labels = np.asarray(raw, np.float64), np.asarray(labels)
    scale = float(np.max(raw[labels == 1] if (labels == 1).any() else raw))
    if not scale > 0:
      raise UserError(f'the largest anomalous raw score is {scale}; §3.8.5 needs it > 0')
    if 'gmean' in run_thresholds:
      raw_t = normalizer.low + run_thresholds['gmean'] * (normalizer.high - normalizer.low)
      t = raw_t / scale
    elif len(np.unique(labels)) == 2:
      t = thr.gmean_threshold(labels, raw / scale)
    else:
      raise UserError('no G-mean threshold: the run has none and the samples are of one label')
    return cls(scale, float(np.clip(t, 0.0, 1.0)))


class Explained:
  """An image run (image or patch protocol) with the score layer: `score(x)` in [0, 1] for
  images x (N, S, S, C) in one jitted program per chunk size, and `fn` (a pytree
  `jax.tree_util.Partial` over the parameters, so jitted explainers take the weights as
  arguments) for the gradient explainers."""

  def __init__(self, run, layer: ScoreLayer, chunk: int = 64):
    self.kind = input_kind(run.config, run.image_shape)
    if self.kind == 'clip' and run.image_shape[0] > 1:
      raise UserError('the explainers explain image models; this run scores clips of '
                      f'{run.image_shape[0]} frames')
    self.run, self.layer, self.chunk = run, layer, chunk
    # an image model run per frame of a video dataset sees clips of one frame
    self.per_frame = self.kind == 'clip'
    self.image_shape = ((run.config.image_size,) * 2 + run.image_shape[-1:]
                        if self.kind == 'patches' else tuple(run.image_shape[-3:]))
    # on one device, once (the mesh may span several; explanations run on one)
    variables = jax.device_put(jax.device_get(run.variables), jax.devices()[0])
    scorer = frame_scorer(run, with_patch=True)
    scorer = _per_frame(scorer) if self.per_frame else scorer
    # static parts in the function (built once: jit caches on its identity), the
    # parameters as the pytree's leaves
    self.fn = jax.tree_util.Partial(functools.partial(_layered, scorer, layer), variables)
    self.outputs = jax.tree_util.Partial(functools.partial(_outputs, scorer), variables)
    self._model_output = jax.tree_util.Partial(
        functools.partial(_model_output, run.model, self.cut), variables)
    self._call = jax.jit(lambda f, x: f(x))        # one program per pytree function
    shapes = jax.eval_shape(self.outputs, jnp.zeros((1, *self.image_shape), jnp.float32))
    self.reconstructs = 'pixel' in shapes

  def check(self, x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 4 or x.shape[1:] != self.image_shape:
      raise UserError(f'explainers take images of shape (N, {", ".join(map(str, self.image_shape))}),'
                      f' got {x.shape}')
    return x

  def _chunks(self, fn, x):
    x = jnp.asarray(x, jnp.float32)
    n, size = x.shape[0], self.chunk
    pad = (-n) % size                   # one compiled chunk shape whatever n
    if pad:
      x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
    parts = [fn(x[i:i + size]) for i in range(0, x.shape[0], size)]
    return jax.tree.map(lambda *p: jnp.concatenate(p)[:n], *parts)

  def score(self, x) -> jax.Array:
    """s(x) of §3.8.5, (N,), in chunks of `chunk` images."""
    return self._chunks(lambda c: self._call(self.fn, c), x)

  def raw_outputs(self, x) -> dict:
    """The run's raw scoring outputs: 'score' and, for reconstruction models, 'pixel'."""
    return self._chunks(lambda c: self._call(self.outputs, c), x)

  def residual(self, x) -> np.ndarray:
    """The baseline explanation: the method's per-pixel error map, (N, S, S) (patch runs:
    the top patch's map placed in the frame, zero elsewhere)."""
    out = self.raw_outputs(self.check(x))
    if 'pixel' not in out:
      raise UserError(f'the residual map does not apply: {self.run.config.model} makes no '
                      'reconstruction')
    pixel = np.asarray(out['pixel'])
    if self.kind != 'patches':
      return pixel
    full = np.zeros((len(pixel), *self.image_shape[:2]), np.float32)
    corners, size = patch_corners(self.run), self.run.config.data.patches.size
    for i, p in enumerate(np.asarray(out['patch'])):
      y, c = corners[p]
      full[i, y:y + size, c:c + size] = pixel[i]
    return full

  def reconstruction(self, x):
    """The model's reconstruction of images x (image runs of reconstruction models), or
    None."""
    if self.kind == 'patches' or not self.reconstructs:
      return None
    return np.asarray(self._chunks(lambda c: self._call(self._model_output, c), x))

  def cut(self, x):
    """Images → what the model sees: themselves, or (patch runs) their test-grid patches,
    flattened to (N·P, size, size, C). A linear map, so ε-LRP passes through it."""
    if self.per_frame:
      return x[:, None]
    if self.kind != 'patches':
      return x
    size = self.run.config.data.patches.size
    x = jnp.stack([x[:, y:y + size, c:c + size] for y, c in patch_corners(self.run)], axis=1)
    return x.reshape(-1, *x.shape[2:])

  def model_output(self):
    """x → the model's reconstruction of `cut(x)` (or a regressor's raw prediction), a
    pytree function over the parameters."""
    return self._model_output


def _per_frame(scorer):
  return lambda variables, x: scorer(variables, x[:, None])


def _layered(scorer, layer, variables, x):
  return layer(scorer(variables, x)['score'])


def _outputs(scorer, variables, x):
  out = scorer(variables, x)
  return {k: v for k, v in out.items() if k in ('score', 'pixel', 'patch')}


def _model_output(model, cut, variables, x):
  out = model.apply(variables, cut(x), train=False)
  y = out['recon'] if 'recon' in out else out['prediction']
  return y.reshape(-1, *y.shape[-3:]) if y.ndim > 2 else y    # one frame per row


def output_relevance(y, seen, n_images: int):
  """ε-LRP's starting relevance at the model output y: each element's squared error
  against what it reconstructs (`seen`) over their count, so that it sums to the MSE score;
  for patch stacks only the worst patch's (the score is the max over patches). A
  regressor's output (N,) is its own relevance."""
  if y.ndim == 1:
    return y
  err = jnp.square(y - jax.lax.stop_gradient(seen))
  per = err.reshape(n_images, -1, *err.shape[1:])
  mse = jnp.mean(per, axis=tuple(range(2, per.ndim)))
  top = jax.nn.one_hot(jnp.argmax(mse, axis=1), per.shape[1], dtype=err.dtype)
  per = per * top.reshape(top.shape + (1,) * (per.ndim - 2)) / np.prod(per.shape[2:])
  return per.reshape(err.shape)
