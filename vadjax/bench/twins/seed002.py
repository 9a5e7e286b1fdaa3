"""PyTorch twins of seed 002's networks (`alps`, `adacl_cnn`), with the Flax module names
(ported by `vadjax.bench.twins.port`). Inputs NCHW; outputs as the Flax models'.

The ALPS twin's `after_backward()` turns the distorter's gradient into its ascent direction
(−adversary_weight / ae_weight, as `vadjax.methods.alps`), for the benchmark's train step.
"""

import torch
from torch import nn
from torch.nn import functional as F

from vadjax.bench.twins.registry import add


class _Encoder(nn.Module):
  def __init__(self, cin, filters, latent_dim):
    super().__init__()
    for i, f in enumerate(filters):
      setattr(self, f'enc{i}', nn.Conv2d(cin, f, 3, 2, 1))
      cin = f
    setattr(self, f'enc{len(filters)}', nn.Conv2d(cin, latent_dim, 3, 1, 1))
    self.depth = len(filters) + 1

  def forward(self, x):
    for i in range(self.depth):
      x = getattr(self, f'enc{i}')(x)
      if i < self.depth - 1:
        x = F.leaky_relu(x, 0.2)
    return x.mean(dim=(2, 3))


class _Decoder(nn.Module):
  def __init__(self, channels, size, filters, latent_dim):
    super().__init__()
    self.h0, self.w0, self.f = size[0] // 16, size[1] // 16, filters[-1]
    self.fc = nn.Linear(latent_dim, self.h0 * self.w0 * self.f)
    widths = (self.f, self.f, filters[-2], filters[0], filters[0], channels)
    cin = self.f
    for i, (w, s) in enumerate(zip(widths, (2, 1, 2, 2, 2, 1))):
      k = 4 if s == 2 else 3
      setattr(self, f'dec{i}', nn.ConvTranspose2d(cin, w, k, s, 1))
      cin = w

  def forward(self, z):
    h = F.leaky_relu(self.fc(z), 0.2).view(-1, self.h0, self.w0, self.f).permute(0, 3, 1, 2)
    for i in range(6):
      h = getattr(self, f'dec{i}')(h)
      if i < 5:
        h = F.leaky_relu(h, 0.2)
    return torch.sigmoid(h)


class ALPS(nn.Module):

  def __init__(self, channels=1, input_size=(32, 32), latent_dim=32, filters=(32, 64, 128),
               distorter_filters=(32, 64, 64), epsilon=0.5, adversary_weight=0.5,
               ae_weight=1.0):
    super().__init__()
    self.encoder = _Encoder(channels, filters, latent_dim)
    self.decoder = _Decoder(channels, input_size, filters, latent_dim)
    self.distorter = _Encoder(channels, distorter_filters, latent_dim)
    self.epsilon, self.flip = epsilon, -adversary_weight / ae_weight

  def forward(self, x):
    z = self.encoder(x)
    scale = z.detach().square().mean(dim=1, keepdim=True).sqrt()
    p = self.epsilon * torch.tanh(self.distorter(x)) * scale
    both = self.decoder(torch.cat([z, z + p]))
    return {'recon': both[:len(x)], 'recon_perturbed': both[len(x):], 'latent': z,
            'perturbation': p}

  @staticmethod
  def loss(out, x, target=None):
    """The autoencoder's loss on the perturbed reconstruction; the distorter ascends it."""
    return torch.mean((out['recon_perturbed'].float() - x) ** 2)

  def after_backward(self):
    for q in self.distorter.parameters():
      if q.grad is not None:
        q.grad.mul_(self.flip)


class ADACLRegressor(nn.Module):

  def __init__(self, channels=1, input_size=None, filters=(32, 64, 128, 128), hidden=64):
    super().__init__()
    del input_size
    cin = channels
    for i, f in enumerate(filters):
      setattr(self, f'enc{i}', nn.Conv2d(cin, f, 3, 2 if i < len(filters) - 1 else 1, 1))
      setattr(self, f'enc{i}_bn', nn.BatchNorm2d(f, eps=1e-5, momentum=0.1))
      cin = f
    self.depth = len(filters)
    self.fc0, self.fc1 = nn.Linear(cin, hidden), nn.Linear(hidden, 1)

  def forward(self, x):
    for i in range(self.depth):
      x = F.relu(getattr(self, f'enc{i}_bn')(getattr(self, f'enc{i}')(x)))
    feature = F.relu(self.fc0(x.amax(dim=(2, 3))))
    return {'prediction': self.fc1(feature)[:, 0], 'latent': feature}

  @staticmethod
  def loss(out, x, target):
    """Regression on the (created) labels, MSE (vadjax.methods.adacl)."""
    return torch.mean((out['prediction'].float() - target) ** 2)


add('alps', ALPS)
add('adacl_cnn', ADACLRegressor)
