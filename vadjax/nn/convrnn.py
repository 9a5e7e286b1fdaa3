"""Convolutional recurrent cells and layers: ConvRNN, ConvLSTM, ConvGRU (seed 001,
001_22531b3c5af6eb6c.txt §3.7.2, eqs. 3.15–3.17; METHODS.md §2).

  ConvRNN   H_t = tanh(W_x*X_t + W_h*H_{t−1} + b);  O_t = σ(W_o*H_t + b_o)  (the output)
  ConvLSTM  i, f = σ(W_x*X + W_h*H + w_c⊙C_{t−1} + b); C_t = f⊙C + i⊙tanh(W_x*X + W_h*H + b)
            o = σ(W_x*X + W_h*H + w_c⊙C_t + b);  H_t = o⊙tanh(C_t)
            (peepholes w_c: Hadamard weights of shape (h, w, F), as Shi et al.; optional —
            the seed's code has none, and Tab. 4.12's counts match the cell without them.
            No +1 on the forget gate: the equation has none, unlike Flax's ConvLSTMCell.)
  ConvGRU   u, r = σ(W_x*X + W_h*H + b);  a = tanh(r⊙(W_ha*H) + W_xa*X)  (no bias on a)
            H_t = a⊙(1 − u) + u⊙H_{t−1}

A layer maps clips (B, T, H, W, C) → (B, T, h, w, F). Its *input path* W_x is a strided conv
(encoder) or a transposed conv (`transposed=True`, the decoder's "transposed cells"); the
hidden path W_h is a 'same' stride-1 conv at the output size.

Speed (PERFORMANCE.md fact 3: the gradient of a scan with a conv in its body is ~40× slow on
XLA:CPU; both the kernel and the input gradient are slow inside the loop):
  * the input path runs once over all T frames, outside the loop (one batched conv), and so
    does ConvRNN's output conv;
  * `scan_impl='auto'` (default): sequences up to 8 steps (the seed's T) are unrolled in
    full and differentiated by JAX; no loop is left, and XLA fuses across steps (GRU
    96→96 at 8×8, batch 8: gradient 52 vs 80 ms with the custom VJP; BUILD_NOTES.md).
    Longer ones take `scan_impl='custom'`, so compile time does not grow with T.
  * `scan_impl='custom'`: a custom_vjp whose backward loop holds only a plain forward conv
    (the input gradient as a conv with the flipped kernel) and the gates' elementwise VJP;
    the kernel gradient W_h is one batched conv after the loop.
    `scan_impl='autodiff'` differentiates the scan with JAX (the reference the tests compare
    with). `unroll` is passed to both scans; `remat=True` recomputes W_h*H in the backward
    loop instead of storing it (T·B·h·w·G·F fewer floats kept).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from vadjax.nn.conv_forms import DN
from vadjax.nn.layers import Conv, ConvTranspose

CELLS = ('rnn', 'lstm', 'gru')
GATES = {'rnn': 1, 'lstm': 4, 'gru': 3}     # channel groups of W_x*X and W_h*H
SCAN_IMPLS = ('auto', 'custom', 'autodiff')
AUTO_UNROLL_MAX_STEPS = 8   # 'auto' unrolls sequences up to this long (BUILD_NOTES.md)


def hidden_conv(h, w):
  """W_h * H: a 'same' stride-1 conv (odd kernels)."""
  p = w.shape[0] // 2
  return lax.conv_general_dilated(h, w, (1, 1), ((p, p), (p, p)), dimension_numbers=DN)


def _input_grad_kernel(w):
  """The kernel whose forward conv is the input gradient of `hidden_conv(·, w)`."""
  return jnp.swapaxes(w[::-1, ::-1], 2, 3)


def gates(cell: str, xp, hp, state, peep):
  """One step's elementwise part: (W_x*X_t + b, W_h*H_{t−1}, state_{t−1}) → state_t.

  `state` is (H,) or (H, C) for the LSTM; `peep` the LSTM's peepholes (3, h, w, F) or None.
  """
  h = state[0]
  if cell == 'rnn':
    return (jnp.tanh(xp + hp),)
  if cell == 'gru':
    xu, xr, xa = jnp.split(xp, 3, axis=-1)
    hu, hr, ha = jnp.split(hp, 3, axis=-1)
    u, r = nn.sigmoid(xu + hu), nn.sigmoid(xr + hr)
    a = jnp.tanh(r * ha + xa)
    return (a * (1 - u) + u * h,)
  c = state[1]
  zi, zf, zc, zo = jnp.split(xp + hp, 4, axis=-1)
  if peep is not None:
    zi, zf = zi + peep[0] * c, zf + peep[1] * c
  c = nn.sigmoid(zf) * c + nn.sigmoid(zi) * jnp.tanh(zc)
  if peep is not None:
    zo = zo + peep[2] * c
  return (nn.sigmoid(zo) * jnp.tanh(c), c)


def _scan_autodiff(cell, unroll, remat, xp, w, peep, state0):
  def body(state, xp_t):
    state = gates(cell, xp_t, hidden_conv(state[0], w), state, peep)
    return state, state[0]
  if remat:
    body = jax.checkpoint(body)
  return lax.scan(body, state0, xp, unroll=unroll)[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _scan_custom(cell, unroll, remat, xp, w, peep, state0):
  return _forward(cell, unroll, remat, xp, w, peep, state0)[0]


def _forward(cell, unroll, remat, xp, w, peep, state0):
  def body(state, xp_t):
    hp = hidden_conv(state[0], w)
    new = gates(cell, xp_t, hp, state, peep)
    return new, (new[0], state, None if remat else hp)
  _, (hs, prev, hps) = lax.scan(body, state0, xp, unroll=unroll)
  return hs, (xp, w, peep, prev, hps)


def _backward(cell, unroll, remat, res, d_hs):
  xp, w, peep, prev, hps = res
  w_in = _input_grad_kernel(w)

  def body(carry, inputs):
    d_state, d_peep = carry
    xp_t, prev_t, hp_t, dh_t = inputs
    if hp_t is None:
      hp_t = hidden_conv(prev_t[0], w)
    d_state = (d_state[0] + dh_t,) + d_state[1:]
    _, vjp = jax.vjp(lambda a, b, s, p: gates(cell, a, b, s, p), xp_t, hp_t, prev_t, peep)
    dxp, dhp, d_prev, dp = vjp(d_state)
    d_prev = (d_prev[0] + hidden_conv(dhp, w_in),) + d_prev[1:]
    if dp is not None:
      d_peep = d_peep + dp
    return (d_prev, d_peep), (dxp, dhp)

  zeros = tuple(jnp.zeros_like(s[0]) for s in prev)
  d_peep0 = None if peep is None else jnp.zeros_like(peep)
  (d_state0, d_peep), (dxp, dhp) = lax.scan(
      body, (zeros, d_peep0), (xp, prev, hps, d_hs), reverse=True, unroll=unroll)
  # the kernel gradient, once over all steps: Σ_t correlate(H_{t−1}, dhp_t)
  flat = lambda a: a.reshape(-1, *a.shape[2:])
  _, kernel_vjp = jax.vjp(lambda k: hidden_conv(flat(prev[0]), k), w)
  (dw,) = kernel_vjp(flat(dhp))
  return dxp, dw, d_peep, d_state0


_scan_custom.defvjp(_forward, _backward)


def recurrence(cell: str, xp, w, peep=None, state0=None, *, scan_impl='auto', unroll=1,
               remat=False):
  """Runs a cell over time: xp (T, B, h, w, G·F) = W_x*X + b for every step; w the hidden
  kernel (k, k, F, G·F). Returns H (T, B, h, w, F).

  `scan_impl='auto'`: up to `AUTO_UNROLL_MAX_STEPS` steps, JAX's autodiff of the fully
  unrolled scan (no loop is left, so fact 3 does not apply, and XLA fuses across steps);
  longer sequences take the custom VJP with `unroll`, whose program size does not grow
  with T."""
  if cell not in CELLS:
    raise ValueError(f'cell must be one of {CELLS}, got {cell!r}')
  if scan_impl not in SCAN_IMPLS:
    raise ValueError(f'scan_impl must be one of {SCAN_IMPLS}, got {scan_impl!r}')
  features = w.shape[2]
  if state0 is None:
    zero = jnp.zeros((*xp.shape[1:-1], features), xp.dtype)
    state0 = (zero, zero) if cell == 'lstm' else (zero,)
  if scan_impl == 'auto':
    steps = xp.shape[0]
    scan_impl, unroll = (('autodiff', steps) if steps <= AUTO_UNROLL_MAX_STEPS
                         else ('custom', unroll))
  fn = _scan_custom if scan_impl == 'custom' else _scan_autodiff
  return fn(cell, unroll, remat, xp, w, peep, tuple(state0))


class ConvRecurrent(nn.Module):
  """One convolutional recurrent layer over clips (B, T, H, W, C) → (B, T, h, w, F).

  The input path is `torch.nn.Conv2d(C, G·F, kernel, stride, padding)` or, with
  `transposed`, `ConvTranspose2d(C, G·F, kernel, stride, padding, output_padding)`, without
  bias; the gates' biases are the parameter `bias` (GRU: u and r only, as eq. 3.17). Hidden
  kernel `hidden` (k, k, F, G·F); gate order: RNN (h), LSTM (i, f, c, o), GRU (u, r, a).
  `reverse=True` runs backwards in time (the backward half of a bidirectional layer).
  """
  cell: str
  features: int
  kernel: int = 3
  stride: int = 1
  padding: int = 1
  output_padding: int = 0
  transposed: bool = False
  peepholes: bool = False
  reverse: bool = False
  scan_impl: str = 'auto'
  unroll: int = 1
  remat: bool = False
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.cell not in CELLS:
      raise ValueError(f'cell must be one of {CELLS}, got {self.cell!r}')
    b, t = x.shape[:2]
    g, f = GATES[self.cell], self.features
    frames = x.reshape(b * t, *x.shape[2:]).astype(self.dtype)
    if self.transposed:
      xp = ConvTranspose(g * f, self.kernel, self.stride, self.padding, self.output_padding,
                         use_bias=False, impl=self.conv_impl, dtype=self.dtype,
                         name='input')(frames)
    else:
      xp = Conv(g * f, self.kernel, self.stride, self.padding, use_bias=False,
                impl=self.conv_impl, dtype=self.dtype, name='input')(frames)
    biased = f if self.cell == 'rnn' else (4 * f if self.cell == 'lstm' else 2 * f)
    bias = self.param('bias', nn.initializers.zeros, (biased,))
    xp = xp + jnp.pad(bias, (0, g * f - biased)).astype(self.dtype)
    xp = jnp.swapaxes(xp.reshape(b, t, *xp.shape[1:]), 0, 1)          # time-major
    w = self.param('hidden', nn.initializers.lecun_normal(),
                   (self.kernel, self.kernel, f, g * f)).astype(self.dtype)
    peep = None
    if self.cell == 'lstm' and self.peepholes:
      peep = self.param('peepholes', nn.initializers.zeros,
                        (3, *xp.shape[2:4], f)).astype(self.dtype)
    if self.reverse:
      xp = xp[::-1]
    hs = recurrence(self.cell, xp, w, peep, scan_impl=self.scan_impl, unroll=self.unroll,
                    remat=self.remat)
    if self.reverse:
      hs = hs[::-1]
    hs = jnp.swapaxes(hs, 0, 1)
    if self.cell == 'rnn':     # O_t = σ(W_o*H_t + b_o), batched over all steps
      o = Conv(f, self.kernel, 1, self.kernel // 2, dtype=self.dtype, name='output')(
          hs.reshape(b * t, *hs.shape[2:]))
      hs = nn.sigmoid(o).reshape(hs.shape)
    return hs


class Bidirectional(nn.Module):
  """A forward and a time-reversed layer, merged by their mean (seed 001 §3.7.4; the time
  axis is reversed, not the batch axis as in the seed's code)."""
  layer: dict      # ConvRecurrent's fields

  @nn.compact
  def __call__(self, x):
    fwd = ConvRecurrent(**self.layer, name='fwd')(x)
    bwd = ConvRecurrent(**self.layer, reverse=True, name='bwd')(x)
    return (fwd + bwd) / 2
