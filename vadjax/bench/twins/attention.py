"""Twins of the attention blocks (vadjax.nn.attention): SE, attention-augmented conv, input
soft attention (SA / SSA), CBAM, "learn to pay attention"."""

import torch
from torch import nn
from vadjax.bench.twins.registry import bn


class SqueezeExcite(nn.Module):
  def __init__(self, c, reduction=16):
    super().__init__()
    self.squeeze = nn.Linear(c, max(c // reduction, 1), bias=False)
    self.excite = nn.Linear(max(c // reduction, 1), c, bias=False)

  def forward(self, x):
    s = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean((2, 3))))))
    return x * s[:, :, None, None]


class AugmentedConv(nn.Module):
  def __init__(self, cin, features, kernel, stride, key_depth, value_depth=1, heads=1):
    super().__init__()
    self.dk, self.dv, self.nh = key_depth, value_depth, heads
    self.conv = nn.Conv2d(cin, features - value_depth, kernel, stride)
    self.qkv = nn.Conv2d(cin, 2 * key_depth + value_depth, kernel, stride)
    self.attn_out = nn.Conv2d(value_depth, value_depth, 1)

  def forward(self, x):
    conv, qkv = self.conv(x), self.qkv(x)
    b, _, h, w = qkv.shape
    q, k, v = torch.split(qkv.flatten(2), [self.dk, self.dk, self.dv], dim=1)
    q, k, v = (t.reshape(b, self.nh, -1, h * w) for t in (q, k, v))
    q = q * (self.dk // self.nh) ** -0.5
    weights = torch.softmax(torch.einsum('bndq,bndk->bnqk', q, k), dim=-1)
    attn = torch.einsum('bnqk,bndk->bndq', weights, v).reshape(b, self.dv, h, w)
    received = weights.mean((1, 2)).reshape(b, h, w)
    return torch.cat([conv, self.attn_out(attn)], 1), received


class InputAttention(nn.Module):
  def __init__(self, c, kind='sa', hidden=64, kernels=(3, 5), penalty=1e-6, sa_form='paper'):
    super().__init__()
    self.kind, self.penalty, self.form = kind, penalty, sa_form
    self.conv1 = nn.Conv2d(c, hidden, kernels[0], 1, kernels[0] // 2)
    self.conv2 = nn.Conv2d(hidden, c, kernels[1], 1, kernels[1] // 2)
    self.bn = bn(c)

  def forward(self, x):
    a = self.conv2(self.conv1(x))
    if self.kind == 'sa':
      amap = torch.sigmoid(self.bn(a if self.form == 'paper' else x * a))
      xh = x * amap if self.form == 'paper' else amap
      return xh, amap.mean(1), self.penalty * amap.flatten(1).norm(dim=1)
    a = self.bn(a)
    sam = torch.softmax(a.sum(3, keepdim=True), dim=2) * torch.softmax(a.sum(2, keepdim=True),
                                                                       dim=3)
    lo = sam.flatten(1).min(1).values[:, None, None, None]
    hi = sam.flatten(1).max(1).values[:, None, None, None]
    sam = 0.3 + 0.7 * (sam - lo) / torch.clamp(hi - lo, min=1e-12)
    return x * sam, sam.mean(1), torch.zeros(x.shape[0])


class CBAM(nn.Module):
  def __init__(self, c, reduction=16, kernel=7):
    super().__init__()
    self.mlp0 = nn.Linear(c, max(c // reduction, 1))
    self.mlp1 = nn.Linear(max(c // reduction, 1), c)
    self.spatial = nn.Conv2d(2, 1, kernel, 1, kernel // 2, bias=False)
    self.spatial_bn = bn(1)

  def forward(self, x):
    def mlp(v):
      return self.mlp1(torch.relu(self.mlp0(v)))
    x = x * torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
    s = torch.sigmoid(self.spatial_bn(self.spatial(pooled)))
    return x * s, s[:, 0]


class PayAttention(nn.Module):
  def __init__(self, c, global_c, compatibility='pc'):
    super().__init__()
    self.compatibility = compatibility
    self.project = nn.Linear(global_c, c)
    if compatibility == 'pc':
      self.u = nn.Conv2d(c, 1, 1, bias=False)

  def forward(self, local, g):
    b, c, h, w = local.shape
    g = self.project(g)[:, :, None, None]
    logits = self.u(local + g)[:, 0] if self.compatibility == 'pc' else (local * g).sum(1)
    a = torch.softmax(logits.reshape(b, h * w), dim=1)
    return torch.einsum('bn,bcn->bc', a, local.flatten(2)), a.reshape(b, h, w)
