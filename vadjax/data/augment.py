"""ADACL's anomaly creation: image transforms that turn normal samples into anomalies, on
device, random per sample (seed 002, 002_437da2b4a4748de8.txt §4.3.4, Fig. 4.4).

  cutpaste  a random patch (each side 10–30 % of the image's) pasted at another random place
  puzzle    the four quarters shuffled by a random permutation other than the identity
  rotate    rotation by 90° once or three times
  mixup     λ·x + (1 − λ)·rot90(x, k), λ ~ U[0.5, 0.7], k ∈ {1, 2, 3}

The thesis gives the transforms, not their ranges: the patch sizes, λ's interval and the
mix-up's rotations are our choices (BUILD_NOTES.md). Every transform is a pure function of
its sampled parameters (`sample_<name>(key, shape)` → params, `<name>(x, params)` → image;
rotate's is `rot90`)
so tests can check the output exactly; `create_anomalies` draws one transform and its
parameters per sample (vmap + lax.switch) and works under jit and vmap.
Images are (H, W, C); puzzle needs even H and W, rotations need H = W.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from vadjax.registry import UserError

AUGMENTATIONS = ('cutpaste', 'puzzle', 'rotate', 'mixup')
PATCH_FRACTION = (0.1, 0.3)
MIX_WEIGHT = (0.5, 0.7)
# every permutation of the four quarters but the identity (row 0 of the lexicographic list)
PERMUTATIONS = np.array(list(itertools.permutations(range(4)))[1:], np.int32)


def sample_cutpaste(key, shape):
  """(src_y, src_x, dst_y, dst_x, height, width): the destination differs from the source."""
  h, w = shape[:2]
  ks = jax.random.split(key, 4)
  lo_h, hi_h = (max(1, int(round(f * h))) for f in PATCH_FRACTION)
  lo_w, hi_w = (max(1, int(round(f * w))) for f in PATCH_FRACTION)
  ph = jax.random.randint(ks[0], (), lo_h, hi_h + 1)
  pw = jax.random.randint(ks[1], (), lo_w, hi_w + 1)
  ny, nx = h - ph + 1, w - pw + 1                 # positions a patch can take
  src = jax.random.randint(ks[2], (), 0, ny * nx)
  dst = jax.random.randint(ks[3], (), 0, ny * nx - 1)
  dst = dst + (dst >= src)                        # any position but the source's
  return jnp.stack([src // nx, src % nx, dst // nx, dst % nx, ph, pw])


def cutpaste(x, params):
  sy, sx, dy, dx, ph, pw = params
  ys, xs = jnp.arange(x.shape[0])[:, None], jnp.arange(x.shape[1])[None, :]
  inside = (ys >= dy) & (ys < dy + ph) & (xs >= dx) & (xs < dx + pw)
  # rolling maps the source box onto the destination box without wrapping, as both lie
  # inside the image
  moved = jnp.roll(x, (dy - sy, dx - sx), axis=(0, 1))
  return jnp.where(inside[..., None], moved, x)


def sample_puzzle(key, shape):
  del shape
  return jnp.asarray(PERMUTATIONS)[jax.random.randint(key, (), 0, len(PERMUTATIONS))]


def quarters(x):
  h, w = x.shape[0] // 2, x.shape[1] // 2
  return jnp.stack([x[:h, :w], x[:h, w:], x[h:, :w], x[h:, w:]])


def puzzle(x, perm):
  """Quarter i of the output is quarter perm[i] of the input (row-major quarters)."""
  q = quarters(x)[perm]
  return jnp.concatenate([jnp.concatenate([q[0], q[1]], 1), jnp.concatenate([q[2], q[3]], 1)],
                         0)


def sample_rotate(key, shape):
  del shape
  return jnp.where(jax.random.bernoulli(key), 1, 3)


def rot90(x, k):
  """x rotated counter-clockwise k times (k traced, in 0..3), as np.rot90(x, k)."""
  return jax.lax.switch(jnp.mod(k, 4), [lambda y, i=i: jnp.rot90(y, i) for i in range(4)], x)


def sample_mixup(key, shape):
  del shape
  k1, k2 = jax.random.split(key)
  lam = jax.random.uniform(k1, (), minval=MIX_WEIGHT[0], maxval=MIX_WEIGHT[1])
  return jnp.stack([lam, jax.random.randint(k2, (), 1, 4).astype(jnp.float32)])


def mixup(x, params):
  lam, k = params[0], params[1].astype(jnp.int32)
  return lam * x + (1 - lam) * rot90(x, k)


_FNS = {'cutpaste': (sample_cutpaste, cutpaste), 'puzzle': (sample_puzzle, puzzle),
        'rotate': (sample_rotate, rot90), 'mixup': (sample_mixup, mixup)}


def check(names, image_shape) -> tuple[str, ...]:
  """The augmentation names, validated against each other and the image shape."""
  names = tuple(names)
  unknown = [n for n in names if n not in _FNS]
  if unknown or not names:
    raise UserError(f'unknown ADACL augmentations {unknown or "(none given)"}; choose from '
                    f'{", ".join(AUGMENTATIONS)}')
  h, w = image_shape[:2]
  if 'puzzle' in names and (h % 2 or w % 2):
    raise UserError(f'puzzle needs even image sides, got {h}×{w}; change image_size')
  if {'rotate', 'mixup'} & set(names) and h != w:
    raise UserError(f'rotate and mixup need square images, got {h}×{w}')
  return names


def apply_one(key, x, names):
  """One randomly chosen transform of `names`, with random parameters, applied to x."""
  k_choice, k_params = jax.random.split(key)
  branches = [lambda k, y, n=n: _FNS[n][1](y, _FNS[n][0](k, y.shape)) for n in names]
  choice = jax.random.randint(k_choice, (), 0, len(names))
  return jax.lax.switch(choice, branches, k_params, x), choice


def create_anomalies(key, images, names=AUGMENTATIONS):
  """images (B, H, W, C) → (anomalies (B, H, W, C), index into `names` per sample)."""
  names = check(names, images.shape[1:])
  keys = jax.random.split(key, images.shape[0])
  out, choice = jax.vmap(lambda k, x: apply_one(k, x, names))(keys, images)
  return out.astype(images.dtype), choice
