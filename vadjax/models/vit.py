"""Vision Transformers in the layout of the DINO release (seed 004; Caron et al. 2021,
Dosovitskiy et al. 2020), so that its published checkpoints load by name
(vadjax/models/checkpoints.py).

Patch embedding (a p×p conv of stride p), a class token, learned position embeddings for the
model's native grid, bicubically resized (PyTorch's bicubic, a = −0.75, as DINO's
`interpolate_pos_encoding`) when the input has another grid; pre-norm blocks (LayerNorm
ε 1e-6, multi-head self-attention with one qkv projection, MLP with exact GELU), a final
LayerNorm. Returns the class token, the patch tokens and the last block's attention maps
(for figures: DINO's class-token attention heads).

Sizes: the release's ViT-S/16, S/8, B/16, B/8 (native 224×224), DeiT's tiny, and `vit_mini`,
a four-block ViT that a 2-core CPU pretrains with DINO in minutes (native 64×64, patch 8).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vadjax.models import BACKBONES
from vadjax.nn.layers import output
from vadjax.registry import UserError


def cubic_weights(n_in: int, n_out: int, scale: float | None = None) -> np.ndarray:
  """(n_out, n_in) matrix of PyTorch's bicubic resize along one axis (align_corners=False,
  a = −0.75, edge samples clamped; `scale` as `F.interpolate`'s scale_factor, default
  n_out / n_in): resizing a grid is W_h · grid · W_wᵀ."""
  scale = scale or n_out / n_in
  a = -0.75

  def kernel(d):
    d = abs(d)
    if d <= 1:
      return ((a + 2) * d - (a + 3)) * d * d + 1
    return (((d - 5) * d + 8) * d - 4) * a if d < 2 else 0.0
  w = np.zeros((n_out, n_in), np.float64)
  for o in range(n_out):
    src = (o + 0.5) / scale - 0.5
    base = int(np.floor(src))
    for j in range(base - 1, base + 3):
      w[o, min(max(j, 0), n_in - 1)] += kernel(src - j)
  return w


def resize_pos_embed(pos, grid: tuple[int, int]):
  """(1, 1 + g·g, D) embeddings of a g×g grid → (1, 1 + h·w, D) for grid (h, w), as the
  DINO release's `interpolate_pos_encoding`: bicubic with scale factor (h + 0.1) / g, so
  the sample positions are (o + 0.5)·g / (h + 0.1) − 0.5, not those of size=(h, w)."""
  n = pos.shape[1] - 1
  g = int(round(n ** 0.5))
  if g * g != n:
    raise UserError(f'position embeddings of {n} patches are not a square grid')
  if (g, g) == tuple(grid):
    return pos
  patches = pos[0, 1:].reshape(g, g, -1)
  wh, ww = (cubic_weights(g, side, (side + 0.1) / g) for side in grid)
  patches = jnp.einsum('hi,ijd,wj->hwd', wh, patches, ww, precision='highest')
  return jnp.concatenate([pos[:, :1], patches.reshape(1, -1, pos.shape[-1])], axis=1)


class PatchEmbed(nn.Module):
  dim: int
  patch: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    p = self.patch
    return nn.Conv(self.dim, (p, p), (p, p), padding='VALID', dtype=self.dtype, name='proj')(x)


def dense(n: int, dtype, name: str) -> nn.Dense:
  """A linear layer with the DINO release's initialisation (truncated normal σ 0.02, zero
  bias): ViTs trained from scratch (DINO) start from it."""
  return nn.Dense(n, dtype=dtype, kernel_init=nn.initializers.truncated_normal(0.02),
                  name=name)


class Attention(nn.Module):
  dim: int
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, n, _ = x.shape
    hd = self.dim // self.heads
    qkv = dense(3 * self.dim, self.dtype, 'qkv')(x)
    # (3, B, heads, N, hd): batched matmuls over (B, heads) run 3× faster on XLA:CPU than
    # the same products as einsums over the (B, N, heads, hd) layout (BUILD_NOTES.md)
    q, k, v = jnp.transpose(qkv.reshape(b, n, 3, self.heads, hd), (2, 0, 3, 1, 4))
    logits = (q * hd ** -0.5) @ jnp.swapaxes(k, -1, -2)
    attn = jax.nn.softmax(logits.astype(jnp.promote_types(self.dtype, jnp.float32)), axis=-1)
    y = jnp.swapaxes(attn.astype(self.dtype) @ v, 1, 2).reshape(b, n, self.dim)
    return dense(self.dim, self.dtype, 'proj')(y), attn


class Mlp(nn.Module):
  dim: int
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.gelu(dense(self.hidden, self.dtype, 'fc1')(x), approximate=False)
    return dense(self.dim, self.dtype, 'fc2')(x)


class Block(nn.Module):
  dim: int
  heads: int
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    norm = lambda name: nn.LayerNorm(1e-6, dtype=self.dtype, name=name)
    y, attn = Attention(self.dim, self.heads, self.dtype, name='attn')(norm('norm1')(x))
    x = x + y
    x = x + Mlp(self.dim, int(self.dim * self.mlp_ratio), self.dtype, name='mlp')(
        norm('norm2')(x))
    return x, attn


class ViT(nn.Module):
  """x (B, H, W, C) with H, W multiples of `patch` → {'cls': (B, D), 'tokens': (B, h·w, D),
  'attention': (B, heads, 1 + h·w, 1 + h·w) of the last
  block, 'latent': the class token}."""
  dim: int = 384
  depth: int = 12
  heads: int = 6
  patch: int = 16
  native: int = 224            # the input side the position embeddings are for
  channels: int = 3
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train                   # no dropout or batch statistics
    if x.ndim != 4 or x.shape[-1] != self.channels or x.shape[1] % self.patch or \
        x.shape[2] % self.patch:
      raise UserError(f'ViT/{self.patch} expects images (batch, height, width, '
                      f'{self.channels}) with sides a multiple of {self.patch}; got '
                      f'{tuple(x.shape)}')
    h = PatchEmbed(self.dim, self.patch, self.dtype, name='patch_embed')(x.astype(self.dtype))
    grid = h.shape[1:3]
    h = h.reshape(h.shape[0], -1, self.dim)
    g = self.native // self.patch
    cls = self.param('cls_token', nn.initializers.truncated_normal(0.02), (1, 1, self.dim))
    pos = self.param('pos_embed', nn.initializers.truncated_normal(0.02),
                     (1, 1 + g * g, self.dim))
    h = jnp.concatenate([jnp.broadcast_to(cls, (h.shape[0], 1, self.dim)).astype(h.dtype), h],
                        axis=1)
    h = h + resize_pos_embed(pos, grid).astype(h.dtype)
    attn = None
    for i in range(self.depth):
      h, attn = Block(self.dim, self.heads, self.mlp_ratio, self.dtype, name=f'blocks_{i}')(h)
    h = output(nn.LayerNorm(1e-6, dtype=self.dtype, name='norm')(h))
    return {'cls': h[:, 0], 'tokens': h[:, 1:], 'attention': attn, 'latent': h[:, 0]}


SIZES = {   # name: (dim, depth, heads, patch, native side)
    'vit_s16': (384, 12, 6, 16, 224), 'vit_s8': (384, 12, 6, 8, 224),
    'vit_b16': (768, 12, 12, 16, 224), 'vit_b8': (768, 12, 12, 8, 224),
    'vit_tiny16': (192, 12, 3, 16, 224), 'vit_mini': (128, 4, 4, 8, 64),
}
for _name, (_d, _n, _h, _p, _s) in SIZES.items():
  BACKBONES.register(_name)(functools.partial(ViT, dim=_d, depth=_n, heads=_h, patch=_p,
                                              native=_s))
