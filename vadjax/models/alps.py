"""ALPS networks (seed 002, 002_437da2b4a4748de8.txt §3.3.1, Fig. 3.1): an autoencoder and
the Adversarial Distorter that perturbs its latent.

  encoder     four 3×3 convs (stride 2, 2, 2, 1; `filters`, then `latent_dim`) + global
              average pooling → z (B, latent_dim)
  decoder     dense → reshape to (H/16, W/16, filters[-1]) → six transposed convs: 4×4
              stride 2 (×4, doubling the size) and 3×3 stride 1 (after the first, and last),
              sigmoid output
  distorter   a conv encoder (three 3×3 stride-2 convs + a 3×3 conv to latent_dim + global
              average pooling) → a(x) (B, latent_dim)

The thesis fixes the layer counts, not the widths, activations or the perturbation's bound;
ours (BUILD_NOTES.md): LeakyReLU 0.2, no BatchNorm (the decoder runs on clean and perturbed
latents in one step), and the perturbation
    p = ε · tanh(a(x)) · rms(z)        (rms over the latent, held constant in the gradient)
bounded, as an unbounded maximiser wins the min–max outright, and relative to the latent's
scale, as the encoder could otherwise grow z until any fixed bound is negligible.
`perturbation`: 'adversarial' (ALPS), 'noise' (p = ε · N(0, 1) · rms(z), the random-noise AE
of Tab. 3.3; from the 'perturb' rng stream in training, a fixed key in evaluation) or 'none'
(the vanilla AE). Outputs: `recon` = Dec(z), `recon_perturbed` = Dec(z + p), `latent` z,
`perturbation` p.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vadjax.models import MODELS
from vadjax.nn import Conv, ConvTranspose, check_input

PERTURBATIONS = ('adversarial', 'noise', 'none')


def _act(h):
  return nn.leaky_relu(h, negative_slope=0.2)


class Encoder(nn.Module):
  """Convs (stride 2 but the last) + global average pooling."""
  filters: Sequence[int]
  latent_dim: int
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = x.astype(self.dtype)
    for i, f in enumerate(self.filters):
      h = _act(Conv(f, 3, 2, 1, impl=self.conv_impl, dtype=self.dtype, name=f'enc{i}')(h))
    h = Conv(self.latent_dim, 3, 1, 1, impl=self.conv_impl, dtype=self.dtype,
             name=f'enc{len(self.filters)}')(h)
    return jnp.mean(h.astype(jnp.float32), axis=(1, 2))


class Decoder(nn.Module):
  channels: int
  size: tuple[int, int]           # the image's (H, W)
  filters: Sequence[int]
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    h0, w0 = self.size[0] // 16, self.size[1] // 16
    f = self.filters[-1]
    h = _act(nn.Dense(h0 * w0 * f, dtype=self.dtype, name='fc')(z.astype(self.dtype)))
    h = h.reshape(z.shape[0], h0, w0, f)
    widths = (f, f, self.filters[-2], self.filters[0], self.filters[0], self.channels)
    strides = (2, 1, 2, 2, 2, 1)
    for i, (w, s) in enumerate(zip(widths, strides)):
      k, p = (4, 1) if s == 2 else (3, 1)
      h = ConvTranspose(w, k, s, p, impl=self.conv_impl, dtype=self.dtype, name=f'dec{i}')(h)
      if i < 5:
        h = _act(h)
    return nn.sigmoid(h.astype(jnp.float32))


@MODELS.register('alps')
class ALPS(nn.Module):
  channels: int = 1
  latent_dim: int = 32
  filters: Sequence[int] = (32, 64, 128)            # encoder and decoder widths
  distorter_filters: Sequence[int] = (32, 64, 64)
  perturbation: str = 'adversarial'                  # 'adversarial' | 'noise' | 'none'
  epsilon: float = 0.5                               # the perturbation's bound, × rms(z)
  conv_impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_input(x, self.channels, 'alps', min_size=16)
    if x.shape[1] % 16 or x.shape[2] % 16:
      raise ValueError(f'alps needs image sides divisible by 16, got {x.shape[1:3]}; '
                       f'change image_size (e.g. 32 or 64)')
    if self.perturbation not in PERTURBATIONS:
      raise ValueError(f'perturbation must be one of {PERTURBATIONS}, got '
                       f'{self.perturbation!r}')
    kw = dict(conv_impl=self.conv_impl, dtype=self.dtype)
    z = Encoder(self.filters, self.latent_dim, name='encoder', **kw)(x)
    decoder = Decoder(self.channels, x.shape[1:3], self.filters, name='decoder', **kw)
    scale = jax.lax.stop_gradient(jnp.sqrt(jnp.mean(jnp.square(z), axis=1, keepdims=True)))
    if self.perturbation == 'adversarial':
      a = Encoder(self.distorter_filters, self.latent_dim, name='distorter', **kw)(x)
      p = self.epsilon * jnp.tanh(a) * scale
    elif self.perturbation == 'noise':
      key = self.make_rng('perturb') if train else jax.random.PRNGKey(0)
      p = self.epsilon * jax.random.normal(key, z.shape) * scale
    else:
      p = jnp.zeros_like(z)
    if self.perturbation == 'none':
      recon = recon_p = decoder(z)
    else:      # one decoder pass over both latents
      both = decoder(jnp.stack([z, z + p]).reshape(-1, *z.shape[1:]))
      recon, recon_p = both.reshape(2, x.shape[0], *both.shape[1:])
    return {'recon': recon, 'recon_perturbed': recon_p, 'latent': z, 'perturbation': p}
