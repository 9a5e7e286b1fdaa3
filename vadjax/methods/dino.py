"""DINO self-supervised pretraining (Caron et al., ICCV 2021), the backbone of seed 004:
a student ViT matches an EMA teacher's sharpened, centred output on other views of the
same image. Pure functions of a state; the driver is experiments/dino.py.

  head     3-layer MLP (GELU) → L2-normalised bottleneck → weight-normalised linear layer
           (its norm fixed to 1, DINO's `norm_last_layer`), K outputs
  loss     Σ over (teacher global view a, student view b ≠ a) of
           −softmax((t_a − c)/τ_t) · log_softmax(s_b/τ_s), averaged over pairs and batch
  centre   c ← m_c c + (1 − m_c) · mean of the teacher outputs (m_c = 0.9)
  teacher  θ_t ← λ θ_t + (1 − λ) θ_s, λ cosine from 0.996 to 1
  schedules  lr: linear warm-up to base_lr · batch/256, cosine to min_lr; weight decay
           cosine 0.04 → 0.4 (not on biases and norms); τ_t linear warm-up 0.04 → 0.07;
           the last head layer frozen for the first steps; each parameter's gradient
           clipped to a norm (the release's `clip_gradients`)
  views    2 global crops (scale 0.4–1) and n local crops (0.05–0.4), random resized,
           flipped, brightness/contrast jittered, blurred (global 1 always, global 2 at
           0.1, locals at 0.5), solarised (global 2 at 0.2): all on device, per sample.

Collapse monitors (the DINO paper's §5.3; its two collapses): the teacher's mean
per-sample entropy (→ log K when its output is uniform: collapse by centring alone), the
entropy of its batch-mean distribution (→ 0 when every sample picks the same output:
collapse by sharpening alone), and the spread of its normalised class-token features over
the batch (→ 0 when every image maps to one vector).
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from vadjax.methods.feature_cache import IMAGENET_MEAN, IMAGENET_STD
from vadjax.registry import UserError


class DinoHead(nn.Module):
  out_dim: int = 1024
  hidden: int = 512
  bottleneck: int = 128
  norm_last_layer: bool = True    # DINO's flag: the last layer's norms fixed to 1, or learnt

  @nn.compact
  def __call__(self, x):
    dense = lambda n, name: nn.Dense(n, kernel_init=nn.initializers.truncated_normal(0.02),
                                     name=name)
    x = nn.gelu(dense(self.hidden, 'mlp0')(x), approximate=False)
    x = nn.gelu(dense(self.hidden, 'mlp1')(x), approximate=False)
    x = dense(self.bottleneck, 'mlp2')(x)
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    v = self.param('last_layer', nn.initializers.truncated_normal(0.02),
                   (self.bottleneck, self.out_dim))
    w = v / jnp.linalg.norm(v, axis=0, keepdims=True)
    if not self.norm_last_layer:
      w = w * self.param('last_layer_norm', nn.initializers.ones, (self.out_dim,))
    return x @ w


class Dino(nn.Module):
  """Backbone + head; crops of one size at a time (DINO's multi-crop wrapper)."""
  backbone: nn.Module
  head: DinoHead

  def __call__(self, x):
    cls = self.backbone(x)['cls']
    return self.head(cls), cls


@dataclasses.dataclass(frozen=True)
class Settings:
  global_size: int = 64
  local_size: int = 32
  local_crops: int = 4
  global_scale: tuple = (0.4, 1.0)
  local_scale: tuple = (0.05, 0.4)
  out_dim: int = 1024
  hidden: int = 512
  bottleneck: int = 128
  norm_last_layer: bool = True
  base_lr: float = 2e-3          # per 256 images (the release's 5e-4 is for 100+ epochs)
  min_lr: float = 1e-6
  warmup_steps: int = 50
  weight_decay: tuple = (0.04, 0.4)
  momentum: tuple = (0.996, 1.0)
  teacher_temp: tuple = (0.04, 0.07)
  teacher_temp_warmup_steps: int = 100
  student_temp: float = 0.1
  center_momentum: float = 0.9
  clip_grad: float = 3.0
  freeze_last_layer_steps: int = 20
  koleo_weight: float = 0.1      # DINOv2's KoLeo spreading term on the student's cls


def cosine(start: float, end: float, steps: int, warmup: int = 0):
  """DINO's cosine_scheduler per step: 0 → start linearly over `warmup` steps (both ends
  included), then start → end along a half cosine over the remaining steps."""
  def f(step):
    step = jnp.asarray(step, float)          # float64 in float64 runs (the reference lane)
    t = jnp.clip((step - warmup) / max(steps - warmup, 1), 0.0, 1.0)
    value = end + 0.5 * (start - end) * (1 + jnp.cos(math.pi * t))
    return jnp.where(step < warmup, start * step / max(warmup - 1, 1), value)
  return f


def teacher_temperature(s: Settings):
  """DINO's teacher temperature: `np.linspace(lo, hi, warmup)` then hi (the release warms
  it per epoch; here per step)."""
  lo, hi = s.teacher_temp
  w = s.teacher_temp_warmup_steps
  return lambda step: jnp.where(
      step < w, lo + (hi - lo) * jnp.asarray(step, float) / max(w - 1, 1), hi)


def learning_rate(s: Settings, batch_size: int, steps: int):
  return cosine(s.base_lr * batch_size / 256, s.min_lr, steps, s.warmup_steps)


def clip_each(max_norm: float) -> optax.GradientTransformation:
  """DINO's `clip_gradients`: each parameter's gradient scaled to norm ≤ max_norm on its
  own (by max_norm / (norm + 1e-6)), not by the global norm."""
  def clip(g):
    return g * jnp.minimum(1.0, max_norm / (jnp.linalg.norm(g.ravel()) + 1e-6))
  return optax.stateless(lambda updates, _: jax.tree.map(clip, updates))


def _decayed(params):
  """The release's regularised group: every parameter but biases and 1-D ones; the learnt
  last-layer norm is (K, 1) there, so it is decayed."""
  return jax.tree_util.tree_map_with_path(
      lambda path, a: a.ndim > 1 or path[-1].key == 'last_layer_norm', params)


def _last_layer(params):
  return jax.tree_util.tree_map_with_path(
      lambda path, _: 'last' if 'last_layer' in path[-1].key else 'rest', params)


def optimizer(s: Settings, batch_size: int, steps: int) -> optax.GradientTransformation:
  """DINO's optimiser: per-parameter gradient clipping, then AdamW with the lr and weight
  decay schedules of the step. The last head layer is frozen for the first
  `freeze_last_layer_steps` as the release freezes it (its gradient set to None): no
  update, no weight decay and no Adam moments or count, so its Adam bias correction
  starts when it thaws (torch counts steps per parameter; its schedules follow the
  global step, hence the offset)."""
  lr = learning_rate(s, batch_size, steps)
  wd = cosine(*s.weight_decay, steps)
  frozen = s.freeze_last_layer_steps

  def adamw(offset: int):
    return optax.adamw(lambda n: lr(n + offset), weight_decay=lambda n: wd(n + offset),
                       mask=_decayed)
  last = optax.transforms.conditionally_mask(adamw(frozen), lambda n: n >= frozen)
  return optax.chain(clip_each(s.clip_grad),
                     optax.multi_transform({'last': last, 'rest': adamw(0)}, _last_layer))


# ---- views ----

def _crop(image, rng, size: int, scale):
  """A random resized crop (area share in `scale`, aspect 3/4..4/3) of one image, flipped
  with probability 1/2."""
  h, w = image.shape[:2]
  k1, k2, k3, k4, k5 = jax.random.split(rng, 5)
  area = jax.random.uniform(k1, (), minval=scale[0], maxval=scale[1]) * h * w
  ratio = jnp.exp(jax.random.uniform(k2, (), minval=math.log(3 / 4), maxval=math.log(4 / 3)))
  ch = jnp.clip(jnp.sqrt(area / ratio), 1.0, h)
  cw = jnp.clip(jnp.sqrt(area * ratio), 1.0, w)
  y0 = jax.random.uniform(k3, ()) * (h - ch)
  x0 = jax.random.uniform(k4, ()) * (w - cw)
  sc = jnp.array([size / ch, size / cw])
  out = jax.image.scale_and_translate(image, (size, size, image.shape[-1]), (0, 1), sc,
                                      -jnp.array([y0, x0]) * sc, 'linear', antialias=True)
  return jnp.where(jax.random.bernoulli(k5), out[:, ::-1], out)


def _blur(image, rng, p: float):
  """Gaussian blur with σ in [0.1, 2] × side/224 (DINO's range at 224), probability p."""
  k1, k2 = jax.random.split(rng)
  side = image.shape[0]
  sigma = jax.random.uniform(k1, (), minval=0.1, maxval=2.0) * side / 224
  radius = max(1, math.ceil(3 * 2.0 * side / 224))
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (taps / sigma) ** 2)
  k = k / k.sum()
  pad = jnp.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode='reflect')
  rows = sum(k[i] * pad[i:i + side] for i in range(2 * radius + 1))
  out = sum(k[i] * rows[:, i:i + side] for i in range(2 * radius + 1))
  return jnp.where(jax.random.bernoulli(k2, p), out, image)


def _jitter(image, rng):
  """Brightness and contrast ×U(0.6, 1.4) each, with probability 0.8 (DINO's colour jitter
  0.4, of which grey frames keep these two)."""
  k1, k2, k3 = jax.random.split(rng, 3)
  b = jax.random.uniform(k1, (), minval=0.6, maxval=1.4)
  c = jax.random.uniform(k2, (), minval=0.6, maxval=1.4)
  mean = jnp.mean(image)
  out = jnp.clip((image * b - mean * b) * c + mean * b, 0.0, 1.0)
  return jnp.where(jax.random.bernoulli(k3, 0.8), out, image)


def _view(image, rng, size, scale, blur_p, solarize_p):
  k1, k2, k3, k4 = jax.random.split(rng, 4)
  x = _blur(_jitter(_crop(image, k1, size, scale), k2), k3, blur_p)
  x = jnp.where(jax.random.bernoulli(k4, solarize_p), jnp.where(x < 0.5, x, 1.0 - x), x)
  return (x - IMAGENET_MEAN) / IMAGENET_STD


def views(images, rng, s: Settings):
  """(B, H, W, 3) in [0, 1] → (global crops (2B, G, G, 3), local crops (nB, L, L, 3)),
  ImageNet-normalised, crop-major (all samples' view 0, then view 1 ...)."""
  b = images.shape[0]
  spec = [(s.global_size, s.global_scale, 1.0, 0.0), (s.global_size, s.global_scale, 0.1, 0.2)]
  spec += [(s.local_size, s.local_scale, 0.5, 0.0)] * s.local_crops
  keys = jax.random.split(rng, len(spec))
  out = [jax.vmap(lambda im, k, a=a: _view(im, k, *a))(images, jax.random.split(key, b))
         for a, key in zip(spec, keys)]
  glob = jnp.concatenate(out[:2])
  local = jnp.concatenate(out[2:]) if s.local_crops else None
  return glob, local


# ---- state and step ----

@flax.struct.dataclass
class DinoState:
  student: Any
  teacher: Any
  opt_state: Any
  center: jax.Array
  step: jax.Array
  rng: jax.Array


def init_state(model: Dino, tx, rng, s: Settings) -> DinoState:
  """The first state, as one compiled program (run eagerly, each parameter's initialiser
  compiled alone: ~200 programs, 7 s of the quick run)."""
  @jax.jit
  def init(rng):
    k_init, k_state = jax.random.split(rng)
    params = model.init(k_init, jnp.zeros((1, s.global_size, s.global_size, 3)))['params']
    return DinoState(student=params, teacher=jax.tree.map(jnp.copy, params),
                     opt_state=tx.init(params), center=jnp.zeros((s.out_dim,)),
                     step=jnp.zeros((), jnp.int32), rng=k_state)
  # committed as a restored state is: fresh and resumed runs compile the same step program
  return jax.device_put(init(rng), jax.devices()[0])


def dino_loss(student_out, teacher_out, center, s: Settings, temp):
  """student_out (V·B, K) over V views, teacher_out (2·B, K) over the 2 global views."""
  b = teacher_out.shape[0] // 2
  t = jax.nn.softmax((teacher_out - center) / temp, axis=-1).reshape(2, b, -1)
  logp = jax.nn.log_softmax(student_out / s.student_temp, axis=-1)
  logp = logp.reshape(-1, b, logp.shape[-1])
  total, pairs = 0.0, 0
  for a in range(2):
    for v in range(logp.shape[0]):
      if v != a:
        total += jnp.mean(jnp.sum(-t[a] * logp[v], axis=-1))
        pairs += 1
  return total / pairs, t


def koleo(cls):
  """DINOv2's KoLeo regulariser (Sablayrolles et al. 2019): −mean log of each normalised
  feature's distance to its nearest neighbour in the batch; it pushes features apart."""
  f = cls / jnp.maximum(jnp.linalg.norm(cls, axis=-1, keepdims=True), 1e-8)
  d2 = jnp.sum(jnp.square(f[:, None] - f[None]), -1) + jnp.eye(len(f)) * 1e9
  return -jnp.mean(jnp.log(jnp.sqrt(jnp.min(d2, axis=1)) + 1e-8))


def collapse(final: dict, out_dim: int) -> list[str]:
  """The collapses a step's monitors show: 'uniform' (teacher entropy > 0.95 log K), 'one
  output' (batch entropy < 0.05 log K), 'features' (cls spread < 1e-3)."""
  k = math.log(out_dim)
  return [name for name, hit in (('uniform', final['teacher_entropy'] > 0.95 * k),
                                 ('one output', final['teacher_batch_entropy'] < 0.05 * k),
                                 ('features', final['feature_std'] < 1e-3)) if hit]


def monitors(t_probs, teacher_cls) -> dict:
  """Collapse monitors of a step (see the module docstring)."""
  p = t_probs.reshape(-1, t_probs.shape[-1])
  entropy = -jnp.mean(jnp.sum(p * jnp.log(p + 1e-12), axis=-1))
  mean = jnp.mean(p, axis=0)
  batch_entropy = -jnp.sum(mean * jnp.log(mean + 1e-12))
  f = teacher_cls / jnp.maximum(jnp.linalg.norm(teacher_cls, axis=-1, keepdims=True), 1e-12)
  return {'teacher_entropy': entropy, 'teacher_batch_entropy': batch_entropy,
          'feature_std': jnp.mean(jnp.std(f, axis=0))}


def make_update(model: Dino, tx, s: Settings, total_steps: int):
  """The DINO step on given views: (state, global crops (2B, G, G, 3), local crops (nB, L,
  L, 3) or None) → (state, metrics). Unjitted: `make_step` and the PyTorch reference
  (tests/reference) run it."""
  momentum = cosine(*s.momentum, total_steps)
  temperature = teacher_temperature(s)

  def update(state: DinoState, glob, local):
    t_out, t_cls = model.apply({'params': state.teacher}, glob)
    t_out, t_cls = jax.lax.stop_gradient((t_out, t_cls))
    temp = temperature(state.step)

    def loss_fn(params):
      s_out, s_cls = model.apply({'params': params}, glob)
      if local is not None:
        s_out = jnp.concatenate([s_out, model.apply({'params': params}, local)[0]])
      loss, t_probs = dino_loss(s_out, t_out, state.center, s, temp)
      spread = sum(koleo(c) for c in jnp.split(s_cls, 2))   # DINOv2: summed over the crops
      return loss + s.koleo_weight * spread, (t_probs, loss, spread)
    (_, (t_probs, loss, spread)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.student)
    updates, opt_state = tx.update(grads, state.opt_state, state.student)
    student = optax.apply_updates(state.student, updates)
    m = momentum(state.step)
    teacher = jax.tree.map(lambda t, p: m * t + (1 - m) * p, state.teacher, student)
    center = s.center_momentum * state.center + (1 - s.center_momentum) * jnp.mean(t_out, 0)
    lr = learning_rate(s, len(glob) // 2, total_steps)(state.step)
    metrics = {'loss': loss, 'koleo': spread, 'teacher_temp': temp, 'momentum': m,
               'learning_rate': lr, **monitors(t_probs, t_cls)}
    return state.replace(student=student, teacher=teacher, opt_state=opt_state,
                         center=center, step=state.step + 1), metrics
  return update


def make_step(model: Dino, tx, s: Settings, total_steps: int):
  """The jitted DINO step: (state, images (B, H, W, 3) in [0, 1]) → (state, metrics); the
  views come from the state's key and step."""
  update = make_update(model, tx, s, total_steps)

  def step(state: DinoState, images):
    glob, local = views(images, jax.random.fold_in(state.rng, state.step), s)
    return update(state, glob, local)
  return jax.jit(step, donate_argnums=0)


def settings_from(config) -> Settings:
  """Settings from a config group (tuples for the ranges)."""
  fields = {f.name for f in dataclasses.fields(Settings)}
  given = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(config).items()}
  unknown = set(given) - fields
  if unknown:
    raise UserError(f'unknown dino settings {sorted(unknown)}; known: {sorted(fields)}')
  for k, v in given.items():
    if isinstance(v, tuple) and len(v) != 2:
      raise UserError(f'dino.{k} is a (start, end) pair, e.g. dino.{k}="0.04;0.07"; got {v}')
  return Settings(**given)
