"""Attention blocks of seeds 000 and 001 (NHWC). Each block that makes a picture returns it,
so the models can hand their attention maps to the report.

- `SqueezeExcite`: seed 001 §3.5.2 "SE CAE" (Hu et al.): global average pool, two bias-free
  dense layers C → C/r → C (r = 16) with ReLU, sigmoid, channel scaling.
- `CBAM`: seed 000 §2.3 (Woo et al.), in the layout of the public code
  (Jongchan/attention-module): channel gate = a shared MLP C → C/r → C (with biases) over the
  average- and max-pooled vectors, summed, sigmoid; then spatial gate = concat[max, mean]
  over channels → 7×7 conv (no bias) → BN → sigmoid. The seed's text puts a ReLU after that
  BN; the code does not, and a ReLU before a sigmoid would keep every gate ≥ 0.5: we follow
  the code.
- `PayAttention`: seed 000 §2.4 / §3.3.3 (Jetley et al., "Learn to Pay Attention"): local
  descriptors l_i, global descriptor g projected to l's channels, compatibility
  c_i = ⟨u, l_i + g⟩ ('pc') or ⟨l_i, g⟩ ('dp'), softmax over positions, g_a = Σ a_i l_i.
- `AugmentedConv`: seed 001 §3.5.2 "AA CAE" (Bello et al.): a conv to C − d_v channels
  concatenated with multi-head self-attention (d_k key depth, d_v value channels) over the
  positions of the conv's output grid; q, k, v come from a conv with the same kernel and
  stride, so both halves share the output grid. No relative positions (as the seed's code).
- `InputAttention`: seed 001 §3.5.3 eqs. 3.11–3.12, the blocks put before the AE's input:
  x_BN = BN(conv_k2(conv_k1(x))) with C_p intermediate channels, then
    'sa'  x_AM = σ(x_BN), x̂ = x ⊙ x_AM, penalty λ‖x_AM‖ (paper form, default);
          `sa_form='code'`: x̂ = σ(BN(x ⊙ conv(conv(x)))) with penalty λ‖x̂‖ (the code);
    'ssa' S_w = Σ_width x_BN, S_h = Σ_height x_BN, x_SAM = softmax_H(S_w) · softmax_W(S_h),
          min–max scaled to [0.3, 1] per sample (the code scales over the whole batch, a
          batch-dependent quirk we do not copy), x̂ = x ⊙ x_SAM, no penalty.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vadjax.nn.layers import Conv, batch_norm


class SqueezeExcite(nn.Module):
  reduction: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))
    s = nn.relu(nn.Dense(max(c // self.reduction, 1), use_bias=False, dtype=self.dtype,
                         name='squeeze')(s))
    s = nn.sigmoid(nn.Dense(c, use_bias=False, dtype=self.dtype, name='excite')(s))
    return x * s[:, None, None, :]


class CBAM(nn.Module):
  """Returns (gated x, spatial attention map (B, H, W))."""
  reduction: int = 16
  spatial_kernel: int = 7
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    hidden = nn.Dense(max(c // self.reduction, 1), dtype=self.dtype, name='mlp0')
    out = nn.Dense(c, dtype=self.dtype, name='mlp1')

    def mlp(v):
      return out(nn.relu(hidden(v)))

    gate = nn.sigmoid(mlp(jnp.mean(x, axis=(1, 2))) + mlp(jnp.max(x, axis=(1, 2))))
    x = x * gate[:, None, None, :]
    pooled = jnp.concatenate([jnp.max(x, -1, keepdims=True), jnp.mean(x, -1, keepdims=True)], -1)
    k = self.spatial_kernel
    s = Conv(1, k, 1, k // 2, use_bias=False, dtype=self.dtype, name='spatial')(pooled)
    s = nn.sigmoid(batch_norm(train, self.dtype, 'spatial_bn')(s))
    return x * s, s[..., 0]


class PayAttention(nn.Module):
  """Attention-weighted local descriptor. Returns (g_a (B, C), attention map (B, H, W))."""
  compatibility: str = 'pc'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, local, global_features):
    b, h, w, c = local.shape
    g = nn.Dense(c, dtype=self.dtype, name='project')(global_features)[:, None, None, :]
    if self.compatibility == 'pc':
      logits = Conv(1, 1, use_bias=False, dtype=self.dtype, name='u')(local + g)[..., 0]
    elif self.compatibility == 'dp':
      logits = jnp.sum(local * g, axis=-1)
    else:
      raise ValueError(f"compatibility must be 'pc' or 'dp', got {self.compatibility!r}")
    a = jax.nn.softmax(logits.reshape(b, h * w).astype(jnp.float32), axis=-1)
    attended = jnp.einsum('bn,bnc->bc', a.astype(local.dtype), local.reshape(b, h * w, c))
    return attended, a.reshape(b, h, w)


class AugmentedConv(nn.Module):
  """Returns (output (B, H', W', features), mean attention each position receives (B, H', W'))."""
  features: int
  kernel: int | tuple[int, int] = 3
  stride: int = 1
  padding: int = 0
  key_depth: int = 8
  value_depth: int = 1
  heads: int = 1
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dk, dv, nh = self.key_depth, self.value_depth, self.heads
    if dk % nh or dv % nh or not 0 < dv < self.features:
      raise ValueError(f'AugmentedConv needs key/value depths divisible by heads and '
                       f'0 < value_depth < features; got dk={dk}, dv={dv}, heads={nh}, '
                       f'features={self.features}')
    conv = Conv(self.features - dv, self.kernel, self.stride, self.padding,
                impl=self.conv_impl, dtype=self.dtype, name='conv')(x)
    qkv = Conv(2 * dk + dv, self.kernel, self.stride, self.padding, impl=self.conv_impl,
               dtype=self.dtype, name='qkv')(x)
    b, h, w, _ = qkv.shape
    q, k, v = jnp.split(qkv.reshape(b, h * w, 2 * dk + dv), [dk, 2 * dk], axis=-1)
    q, k, v = (t.reshape(b, h * w, nh, -1) for t in (q, k, v))
    q = q * (dk // nh) ** -0.5
    logits = jnp.einsum('bqnd,bknd->bnqk', q, k).astype(jnp.float32)
    weights = jax.nn.softmax(logits, axis=-1)
    attn = jnp.einsum('bnqk,bknd->bqnd', weights.astype(v.dtype), v).reshape(b, h, w, dv)
    attn = Conv(dv, 1, dtype=self.dtype, name='attn_out')(attn)
    received = jnp.mean(weights, axis=(1, 2)).reshape(b, h, w)
    return jnp.concatenate([conv, attn], axis=-1), received


class InputAttention(nn.Module):
  """Returns (x̂, attention map (B, H, W), penalty per sample (B,))."""
  kind: str = 'sa'
  hidden: int = 64          # C_p
  kernels: tuple[int, int] = (3, 5)
  penalty: float = 1e-6     # λ
  sa_form: str = 'paper'
  scale: tuple[float, float] = (0.3, 1.0)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    k1, k2 = self.kernels
    a = Conv(self.hidden, k1, 1, k1 // 2, dtype=self.dtype, name='conv1')(x)
    a = Conv(c, k2, 1, k2 // 2, dtype=self.dtype, name='conv2')(a)
    zero = jnp.zeros(x.shape[:1], jnp.float32)
    if self.kind == 'sa' and self.sa_form == 'paper':
      amap = nn.sigmoid(batch_norm(train, self.dtype, 'bn')(a))
      return x * amap, jnp.mean(amap, -1), self.penalty * _norm(amap)
    if self.kind == 'sa' and self.sa_form == 'code':
      attended = nn.sigmoid(batch_norm(train, self.dtype, 'bn')(x * a))
      return attended, jnp.mean(attended, -1), self.penalty * _norm(attended)
    if self.kind == 'ssa':
      a = batch_norm(train, self.dtype, 'bn')(a).astype(jnp.float32)
      along_h = jax.nn.softmax(jnp.sum(a, axis=2, keepdims=True), axis=1)   # S_w: (B,H,1,C)
      along_w = jax.nn.softmax(jnp.sum(a, axis=1, keepdims=True), axis=2)   # S_h: (B,1,W,C)
      sam = along_h * along_w
      lo = jnp.min(sam, axis=(1, 2, 3), keepdims=True)
      hi = jnp.max(sam, axis=(1, 2, 3), keepdims=True)
      low, high = self.scale
      sam = low + (high - low) * (sam - lo) / jnp.maximum(hi - lo, 1e-12)
      return x * sam.astype(x.dtype), jnp.mean(sam, -1), zero
    raise ValueError(f"input attention must be 'sa' (sa_form 'paper' or 'code') or 'ssa', "
                     f'got {self.kind!r} / {self.sa_form!r}')


def _norm(a):
  return jnp.sqrt(jnp.sum(jnp.square(a.astype(jnp.float32)), axis=(1, 2, 3)))
