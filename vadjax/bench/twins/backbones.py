"""PyTorch references of the seed 004 backbones, written in the published layouts (the DINO
release's `vision_transformer.py` key names, torchvision's `resnet50`), so that their
`state_dict()` is a checkpoint file of the real format: the loader parity tests save one
with random weights, load it into the Flax models through vadjax/models/checkpoints.py and
compare features. timm and torchvision, the natural references, cannot be imported on the
machines this project is built on (BUILD_NOTES.md, seed 004); these follow their code's
structure: torch's own LayerNorm, GELU, bicubic `F.interpolate`, BatchNorm in eval mode.
"""

import math

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from vadjax.bench.twins.registry import add
from vadjax.models import checkpoints
from vadjax.models.vit import SIZES


class Attention(nn.Module):
  def __init__(self, dim, heads):
    super().__init__()
    self.heads = heads
    self.qkv = nn.Linear(dim, 3 * dim)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x):
    b, n, d = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    attn = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d)), attn


class Mlp(nn.Module):
  def __init__(self, dim, hidden):
    super().__init__()
    self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

  def forward(self, x):
    return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
  def __init__(self, dim, heads, mlp_ratio=4.0):
    super().__init__()
    self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
    self.attn, self.mlp = Attention(dim, heads), Mlp(dim, int(dim * mlp_ratio))

  def forward(self, x):
    y, attn = self.attn(self.norm1(x))
    x = x + y
    return x + self.mlp(self.norm2(x)), attn


class PatchEmbed(nn.Module):
  def __init__(self, channels, dim, patch):
    super().__init__()
    self.proj = nn.Conv2d(channels, dim, patch, patch)

  def forward(self, x):
    return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
  """NHWC images → {'cls', 'tokens', 'attention'} as the Flax ViT; state-dict keys as the
  DINO release's backbone files."""

  def __init__(self, dim=384, depth=12, heads=6, patch=16, native=224, channels=3):
    super().__init__()
    self.patch = patch
    self.patch_embed = PatchEmbed(channels, dim, patch)
    g = native // patch
    self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
    self.pos_embed = nn.Parameter(torch.randn(1, 1 + g * g, dim) * 0.02)
    self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
    self.norm = nn.LayerNorm(dim, eps=1e-6)

  def pos(self, h, w):
    g = int(math.sqrt(self.pos_embed.shape[1] - 1))
    if (h, w) == (g, g):
      return self.pos_embed
    grid = self.pos_embed[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
    # the DINO release's interpolate_pos_encoding: a scale factor, 0.1 above the ratio
    grid = F.interpolate(grid, scale_factor=((h + 0.1) / g, (w + 0.1) / g), mode='bicubic',
                         align_corners=False)
    return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], 1)

  def forward(self, x):
    x = x.permute(0, 3, 1, 2)
    h, w = x.shape[2] // self.patch, x.shape[3] // self.patch
    x = self.patch_embed(x)
    x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos(h, w)
    for block in self.blocks:
      x, attn = block(x)
    x = self.norm(x)
    return {'cls': x[:, 0], 'tokens': x[:, 1:], 'attention': attn}


class Bottleneck(nn.Module):
  def __init__(self, cin, width, stride, downsample):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(4 * width)
    self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False),
                                    nn.BatchNorm2d(4 * width)) if downsample else None

  def forward(self, x):
    h = F.relu(self.bn1(self.conv1(x)))
    h = F.relu(self.bn2(self.conv2(h)))
    h = self.bn3(self.conv3(h))
    return F.relu(h + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
  """NHWC images → {'latent': pooled features, 'tokens'}; keys as torchvision's resnet50
  (with its classifier `fc`, which the loader drops). Use in eval mode."""

  def __init__(self, blocks=(3, 4, 6, 3), width=64, channels=3):
    super().__init__()
    self.conv1 = nn.Conv2d(channels, width, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    cin = width
    for stage, n in enumerate(blocks):
      layers = []
      for j in range(n):
        layers.append(Bottleneck(cin, width * 2 ** stage, 2 if stage and not j else 1, j == 0))
        cin = 4 * width * 2 ** stage
      self.add_module(f'layer{stage + 1}', nn.Sequential(*layers))
    self.fc = nn.Linear(cin, 1000)
    for m in self.modules():      # torchvision's initialisation
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

  def forward(self, x):
    h = F.max_pool2d(F.relu(self.bn1(self.conv1(x.permute(0, 3, 1, 2)))), 3, 2, 1)
    for stage in range(1, 5):
      h = getattr(self, f'layer{stage}')(h)
    return {'latent': h.mean((2, 3)), 'tokens': h.flatten(2).transpose(1, 2)}


class LSTMPredictor(nn.Module):
  """The LSTM next-feature predictor (vadjax/models/feature_predictor.py) in PyTorch: clips
  (B, T, 1, 1, D) → {'prediction': vectors 1..T−1 predicted (B, T − 1, D), 'target': those
  vectors}, and the l2 objective of vadjax/methods/feature_prediction.py as `loss`."""

  def __init__(self, channels, input_size=None, hidden=256, layers=1):
    del input_size           # (the twins' signature)
    super().__init__()
    self.lstm = nn.LSTM(channels, hidden, layers, batch_first=True)
    self.out = nn.Linear(hidden, channels)

  def forward(self, x):
    h, _ = self.lstm(x[:, :-1, 0, 0])
    return {'prediction': self.out(h), 'target': x[:, 1:, 0, 0]}

  @staticmethod
  def loss(out, x, target=None):
    del x, target
    return torch.mean((out['prediction'] - out['target']) ** 2)

  def load_flax(self, params: dict) -> 'LSTMPredictor':
    """Copies the Flax predictor's params: per layer, the input kernels ii, if, ig, io and
    the hidden kernels (with the biases) hi, hf, hg, ho, in torch's gate order i, f, g, o."""
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))
    for i in range(self.lstm.num_layers):
      cell = params[f'lstm{i}']
      getattr(self.lstm, f'weight_ih_l{i}').data = torch.cat(
          [t(cell[f'i{g}']['kernel']).T for g in 'ifgo'])
      getattr(self.lstm, f'weight_hh_l{i}').data = torch.cat(
          [t(cell[f'h{g}']['kernel']).T for g in 'ifgo'])
      getattr(self.lstm, f'bias_hh_l{i}').data = torch.cat(
          [t(cell[f'h{g}']['bias']) for g in 'ifgo'])
      getattr(self.lstm, f'bias_ih_l{i}').data.zero_()
    self.out.weight.data, self.out.bias.data = t(params['out']['kernel']).T, t(
        params['out']['bias'])
    return self


add('feature_predictor', LSTMPredictor)


def twin_of(name: str, variables) -> nn.Module:
  """The reference of backbone `name` (a vadjax.models.BACKBONES name) holding the Flax
  `variables`, in eval mode."""
  if name in SIZES:
    dim, depth, heads, patch, native = SIZES[name]
    twin = ViT(dim, depth, heads, patch, native)
  else:
    twin = ResNet() if name == 'resnet50' else ResNet(blocks=(1, 1, 1, 1), width=16)
  missing, _ = twin.load_state_dict({k: torch.tensor(v) for k, v in
                                     checkpoints.torch_named(variables).items()}, strict=False)
  if missing != [] and set(missing) != {'fc.weight', 'fc.bias'}:
    raise ValueError(f'{name}: the Flax variables lack {missing}')
  return twin.eval()
