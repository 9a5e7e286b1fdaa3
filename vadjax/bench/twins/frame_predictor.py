"""PyTorch twin of the U-Net frame predictor (vadjax/models/frame_predictor.py) and a MAML
meta step written the usual PyTorch way (`torch.func.functional_call` and higher-order
`torch.autograd.grad`), for the JAX kernel's parity test and speed comparison."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from vadjax.bench.twins.registry import add


class UNetPredictor(nn.Module):
  """x (B, t, H, W, C) NHWC as the Flax model → (B, H, W, C)."""

  def __init__(self, channels=1, frames_in=4, features=(16, 32, 64), groups=4):
    super().__init__()
    self.levels = len(features)
    cin = frames_in * channels
    for i, f in enumerate(features):
      for j in range(2):
        self.add_module(f'down{i}_conv{j}', nn.Conv2d(cin if j == 0 else f, f, 3, padding=1))
        self.add_module(f'down{i}_gn{j}', nn.GroupNorm(min(groups, f), f, eps=1e-6))
      cin = f
    for i in reversed(range(self.levels - 1)):
      f = features[i]
      self.add_module(f'up{i}', nn.Conv2d(features[i + 1], f, 3, padding=1))
      for j in range(2):
        self.add_module(f'dec{i}_conv{j}', nn.Conv2d(2 * f if j == 0 else f, f, 3, padding=1))
        self.add_module(f'dec{i}_gn{j}', nn.GroupNorm(min(groups, f), f, eps=1e-6))
    self.out = nn.Conv2d(features[0], channels, 1)

  def _block(self, h, name):
    for j in range(2):
      h = F.relu(getattr(self, f'{name}_gn{j}')(getattr(self, f'{name}_conv{j}')(h)))
    return h

  def forward(self, x):
    b, t, hgt, wid, c = x.shape
    h = x.permute(0, 1, 4, 2, 3).reshape(b, t * c, hgt, wid)     # channel = frame·C + c
    skips = []
    for i in range(self.levels):
      h = self._block(h, f'down{i}')
      if i < self.levels - 1:
        skips.append(h)
        h = F.max_pool2d(h, 2)
    for i in reversed(range(self.levels - 1)):
      h = getattr(self, f'up{i}')(F.interpolate(h, scale_factor=2, mode='nearest'))
      h = self._block(torch.cat([h, skips[i]], 1), f'dec{i}')
    return torch.sigmoid(self.out(h)).permute(0, 2, 3, 1)


add('unet_predictor', UNetPredictor)


def meta_loss(model: nn.Module, params: dict, tasks: list, alpha: float, steps: int,
              first_order: bool) -> torch.Tensor:
  """The mean over tasks of the adapted models' validation MSE (the JAX `meta_loss`)."""
  def mse(p, x, y):
    return torch.mean((functional_call(model, p, (x,)) - y) ** 2)
  losses = []
  for (xt, yt), (xv, yv) in tasks:
    p = params
    for _ in range(steps):
      grads = torch.autograd.grad(mse(p, xt, yt), list(p.values()),
                                  create_graph=not first_order)
      p = {k: v - alpha * g for (k, v), g in zip(p.items(), grads)}
    losses.append(mse(p, xv, yv))
  return torch.stack(losses).mean()
