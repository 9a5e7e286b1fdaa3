"""The PyTorch side of the reference lane (tests/reference/run.sh): runs in the reference
venv (torch 2.14.1, torchvision 0.29.1, timm 1.0.29, zennit 0.5.1) and exchanges tensors
with vadjax only through files in OUT.

  loaders OUT  random torchvision ResNet-50 and timm ViT-S/16, S/8, B/16, B/8 (every
               tensor moved off its initial value, so a mis-mapped one shows), saved as
               .pth and .safetensors with their features on a fixed input
  dino OUT     the original DINO training step, written from the paper (Caron et al.
               2021, Alg. 1) and the release's training loop, run on vadjax's initial
               weights and crops (OUT/dino_inputs.npz) → OUT/dino_torch.npz
  lrp OUT      zennit's ε and EpsilonPlus composites (the latter also with ZBox on the
               first layer) on the PyTorch twins of BCAE1 and the deep AE, same weights
               and output relevance as vadjax's (OUT/lrp_inputs.npz)
"""

import copy
import json
import math
import os
import sys

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

torch.set_grad_enabled(False)


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
  """Every parameter and BatchNorm statistic moved off its initial value (LayerNorm and
  BatchNorm start at 1 and 0, where a swapped weight and bias would not show)."""
  g = torch.Generator().manual_seed(seed)
  for name, t in model.state_dict().items():
    if t.is_floating_point():
      noise = torch.randn(t.shape, generator=g) * 0.02
      t.copy_(t.abs() + 0.5 + noise if 'running_var' in name else t + noise)
  return model.eval()


LOADERS = {   # vadjax backbone: (library, constructor name)
    'resnet50': ('torchvision', 'resnet50'),
    'vit_s16': ('timm', 'vit_small_patch16_224'),
    'vit_s8': ('timm', 'vit_small_patch8_224'),
    'vit_b16': ('timm', 'vit_base_patch16_224'),
    'vit_b8': ('timm', 'vit_base_patch8_224'),
}


def loaders(out: str) -> None:
  import timm
  import torchvision
  from safetensors.torch import save_file
  os.makedirs(f'{out}/loaders', exist_ok=True)
  x = torch.from_numpy(np.random.RandomState(0).rand(2, 3, 224, 224).astype(np.float32))
  versions = {'torch': torch.__version__, 'torchvision': torchvision.__version__,
              'timm': timm.__version__}
  for i, (name, (lib, ctor)) in enumerate(LOADERS.items()):
    torch.manual_seed(i)
    if lib == 'torchvision':
      model = _perturbed(getattr(torchvision.models, ctor)(weights=None), i)
      body = nn.Sequential(*list(model.children())[:-2])
      fmap = body(x)
      feats = {'tokens': fmap.flatten(2).transpose(1, 2), 'latent': fmap.mean((2, 3))}
    else:
      model = _perturbed(timm.create_model(ctor, pretrained=False), i)
      h = model.forward_features(x)
      feats = {'cls': h[:, 0], 'tokens': h[:, 1:]}
    state = model.state_dict()
    torch.save(state, f'{out}/loaders/{name}.pth')
    save_file({k: v.contiguous() for k, v in state.items()}, f'{out}/loaders/{name}.safetensors')
    if name == 'vit_s16':   # a DINO training checkpoint: {'teacher', 'student'}, prefixed
      prefixed = {f'module.backbone.{k}': v for k, v in state.items()}
      torch.save({'teacher': prefixed, 'student': {k: v * 0 for k, v in prefixed.items()},
                  'epoch': 1}, f'{out}/loaders/{name}_dino_checkpoint.pth')
    np.savez(f'{out}/loaders/{name}_features.npz', x=x.permute(0, 2, 3, 1).numpy(),
             **{k: v.numpy() for k, v in feats.items()})
    print(f'{name}: {lib} {ctor}, {len(state)} tensors', flush=True)
  with open(f'{out}/loaders/versions.json', 'w') as f:
    json.dump(versions, f)


# ---- DINO, from the paper and the release's training loop ----

class Attention(nn.Module):
  def __init__(self, dim, heads):
    super().__init__()
    self.heads, self.scale = heads, (dim // heads) ** -0.5
    self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

  def forward(self, x):
    b, n, c = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
  def __init__(self, dim, heads):
    super().__init__()
    self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
    self.attn = Attention(dim, heads)
    self.mlp = nn.Sequential()
    self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), \
        nn.Linear(4 * dim, dim)

  def forward(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
  """The DINO release's ViT: its `interpolate_pos_encoding` resizes the position grid with
  `scale_factor=(w0 + 0.1) / sqrt(N)` (bicubic) for crops of another size."""

  def __init__(self, dim, depth, heads, patch):
    super().__init__()
    self.patch = patch
    self.patch_embed = nn.Module()
    self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
    self.pos_embed = nn.Parameter(torch.zeros(1, 1, dim))    # replaced by the loaded one
    self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
    self.norm = nn.LayerNorm(dim, eps=1e-6)

  def interpolate_pos_encoding(self, x, w, h):
    npatch, n = x.shape[1] - 1, self.pos_embed.shape[1] - 1
    if npatch == n and w == h:
      return self.pos_embed
    dim = x.shape[-1]
    w0, h0 = w // self.patch + 0.1, h // self.patch + 0.1
    grid = self.pos_embed[:, 1:].reshape(1, int(math.sqrt(n)), int(math.sqrt(n)), dim)
    grid = F.interpolate(grid.permute(0, 3, 1, 2), mode='bicubic',
                         scale_factor=(w0 / math.sqrt(n), h0 / math.sqrt(n)))
    return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], 1)

  def forward(self, x):
    _, _, w, h = x.shape
    t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
    t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
    t = t + self.interpolate_pos_encoding(t, w, h)
    for blk in self.blocks:
      t = blk(t)
    return self.norm(t)[:, 0]


class DINOHead(nn.Module):
  """MLP (GELU) → L2 normalisation → weight-normalised last layer (g fixed to 1 when
  norm_last_layer): weight = g · v / ‖v‖ per output row, as `nn.utils.weight_norm`."""

  def __init__(self, in_dim, out_dim, hidden, bottleneck):
    super().__init__()
    self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                             nn.GELU(), nn.Linear(hidden, bottleneck))
    self.last_layer = nn.Module()
    self.last_layer.weight_v = nn.Parameter(torch.zeros(out_dim, bottleneck))
    self.last_layer.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=False)

  def forward(self, x):
    x = F.normalize(self.mlp(x), dim=-1, p=2)
    v = self.last_layer.weight_v
    return x @ (self.last_layer.weight_g * v / v.norm(dim=1, keepdim=True)).t()


class MultiCropWrapper(nn.Module):
  """The backbone on each run of same-sized crops, the head on all their class tokens."""

  def __init__(self, backbone, head):
    super().__init__()
    self.backbone, self.head = backbone, head

  def forward(self, crops):
    sizes = torch.tensor([c.shape[-1] for c in crops])
    ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0)
    start, cls = 0, []
    for end in ends.tolist():
      cls.append(self.backbone(torch.cat(crops[start:end])))
      start = end
    cls = torch.cat(cls)
    return self.head(cls), cls


class DINOLoss(nn.Module):
  def __init__(self, out_dim, ncrops, temps, student_temp, center_momentum):
    super().__init__()
    self.ncrops, self.temps = ncrops, temps
    self.student_temp, self.center_momentum = student_temp, center_momentum
    self.register_buffer('center', torch.zeros(1, out_dim))

  def forward(self, student_output, teacher_output, epoch):
    student_out = (student_output / self.student_temp).chunk(self.ncrops)
    temp = self.temps[epoch]
    teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1).detach().chunk(2)
    total, n = 0, 0
    for iq, q in enumerate(teacher_out):
      for v in range(len(student_out)):
        if v == iq:
          continue
        total = total + torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
        n += 1
    total = total / n
    self.update_center(teacher_output)
    return total

  @torch.no_grad()
  def update_center(self, teacher_output):
    batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
    self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)


def koleo(cls, eps=1e-8):
  """DINOv2's KoLeoLoss: −mean log distance of each normalised vector to its nearest."""
  x = F.normalize(cls, eps=eps, p=2, dim=-1)
  dots = x @ x.t()
  n = x.shape[0]
  dots.view(-1)[::n + 1].fill_(-1)
  nearest = dots.argmax(dim=1)
  return -torch.log(nn.PairwiseDistance(2, eps=eps)(x, x[nearest]) + eps).mean()


def cosine_scheduler(base, final, epochs, niter_per_ep, warmup_epochs=0, start_warmup=0):
  warmup = np.linspace(start_warmup, base, warmup_epochs * niter_per_ep)
  iters = np.arange(epochs * niter_per_ep - len(warmup))
  cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
  return np.concatenate((warmup, cos))


def clip_gradients(model, clip):
  for p in model.parameters():
    if p.grad is not None:
      coef = clip / (p.grad.data.norm(2) + 1e-6)
      if coef < 1:
        p.grad.data.mul_(coef)


def cancel_gradients_last_layer(epoch, model, freeze_last_layer):
  if epoch < freeze_last_layer:
    for n, p in model.named_parameters():
      if 'last_layer' in n:
        p.grad = None


def get_params_groups(model):
  regularized, not_regularized = [], []
  for name, p in model.named_parameters():
    if not p.requires_grad:
      continue
    (not_regularized if name.endswith('.bias') or p.ndim == 1 else regularized).append(p)
  return [{'params': regularized}, {'params': not_regularized, 'weight_decay': 0.0}]


def dino(out: str) -> None:
  torch.set_grad_enabled(True)
  z = np.load(f'{out}/dino_inputs.npz')
  c = json.loads(str(z['settings']))
  steps, batch = c['steps'], c['batch_size']
  net = lambda: MultiCropWrapper(
      VisionTransformer(c['dim'], c['depth'], c['heads'], c['patch']),
      DINOHead(c['dim'], c['out_dim'], c['hidden'], c['bottleneck']))
  student, teacher = net(), net()
  init = {k[5:]: torch.from_numpy(z[k]) for k in z.files if k.startswith('init/')}
  dtype = init['backbone.cls_token'].dtype
  student, teacher = student.to(dtype), teacher.to(dtype)
  for name, p in init.items():                # the loaded position grid sets its size
    if name.endswith('pos_embed'):
      student.backbone.pos_embed = nn.Parameter(torch.zeros_like(p))
      teacher.backbone.pos_embed = nn.Parameter(torch.zeros_like(p))
  student.load_state_dict(init)
  teacher.load_state_dict(init)
  for p in teacher.parameters():
    p.requires_grad = False
  ncrops = 2 + c['local_crops']
  lo, hi = c['teacher_temp']
  w = c['teacher_temp_warmup_steps']
  temps = np.concatenate((np.linspace(lo, hi, w), np.ones(steps - w) * hi))
  loss_fn = DINOLoss(c['out_dim'], ncrops, temps, c['student_temp'], c['center_momentum'])
  opt = torch.optim.AdamW(get_params_groups(student))
  lr = cosine_scheduler(c['base_lr'] * batch / 256, c['min_lr'], steps, 1, c['warmup_steps'])
  wd = cosine_scheduler(*c['weight_decay'], steps, 1)
  momentum = cosine_scheduler(*c['momentum'], steps, 1)
  losses, centers, koleos, entropies = [], [], [], []
  for it in range(steps):                     # one iteration per "epoch": per-step schedules
    for i, group in enumerate(opt.param_groups):
      group['lr'] = lr[it]
      if i == 0:
        group['weight_decay'] = wd[it]
    glob = torch.from_numpy(z[f'global_{it}'])
    local = torch.from_numpy(z[f'local_{it}'])
    crops = list(glob.chunk(2)) + list(local.chunk(c['local_crops']))
    teacher_output, _ = teacher(crops[:2])
    student_output, student_cls = student(crops)
    probs = F.softmax((teacher_output - loss_fn.center) / temps[it], dim=-1)
    entropies.append(-(probs * torch.log(probs + 1e-12)).sum(-1).mean().item())
    loss = loss_fn(student_output, teacher_output, it)
    spread = sum(koleo(p) for p in student_cls[:2 * batch].chunk(2))
    opt.zero_grad()
    (loss + c['koleo_weight'] * spread).backward()
    clip_gradients(student, c['clip_grad'])
    cancel_gradients_last_layer(it, student, c['freeze_last_layer_steps'])
    opt.step()
    with torch.no_grad():
      m = momentum[it]
      for q, k in zip(student.parameters(), teacher.parameters()):
        k.data.mul_(m).add_((1 - m) * q.detach().data)
    losses.append(loss.item())
    koleos.append(spread.item())
    centers.append(loss_fn.center[0].numpy().copy())
    print(f'step {it}: loss {loss.item():.6f}', flush=True)
  np.savez(f'{out}/dino_torch.npz', loss=np.array(losses), koleo=np.array(koleos),
           teacher_entropy=np.array(entropies),
           center=np.stack(centers),
           **{f'student/{k}': v.detach().numpy() for k, v in student.state_dict().items()},
           **{f'teacher/{k}': v.detach().numpy() for k, v in teacher.state_dict().items()})


# ---- ε-LRP: zennit on the twins ----

class _Flatten(nn.Module):      # NCHW → the NHWC-ordered vector the Flax Dense layers read
  def forward(self, x):
    return x.permute(0, 2, 3, 1).flatten(1)


class _Unflatten(nn.Module):
  def __init__(self, shape):
    super().__init__()
    self.shape = shape

  def forward(self, x):
    c, h, w = self.shape
    return x.view(-1, h, w, c).permute(0, 3, 1, 2)


def as_sequential(name: str, twin: nn.Module, merge: bool = True) -> nn.Sequential:
  """A copy of the twin's reconstruction path as a Sequential of modules (its activations
  are functional calls, which zennit's rules cannot see; here they are modules), each
  BatchNorm merged exactly into the layer before it when `merge` (zennit 0.5.1's
  MergeBatchNorm leaves the BatchNorm's ε in the identity it leaves behind, scaling by
  1/√(1 + 1e-5) per layer)."""
  twin = copy.deepcopy(twin)
  layers = []
  if name == 'bcae1':
    for i in range(5):
      layers += [getattr(twin, f'enc{i}'), getattr(twin, f'enc{i}_bn'), nn.ReLU()]
    for i in range(5):
      layers.append(getattr(twin, f'dec{i}'))
      if i < 4:
        layers += [getattr(twin, f'dec{i}_bn'), nn.LeakyReLU(twin.slope)]
    layers.append(nn.Sigmoid())
  else:
    for i in range(twin.n_enc):
      layers += [getattr(twin, f'enc{i}'), getattr(twin, f'enc{i}_bn'), nn.LeakyReLU(0.2)]
    layers.append(_Flatten())
    for i in range(twin.n_fc):
      layers.append(getattr(twin, f'fc{i}'))
      if i < twin.n_fc - 1:
        layers.append(nn.ReLU())
    layers.append(_Unflatten(twin.shape))
    for i in range(twin.n_dec):
      layers.append(getattr(twin, f'dec{i}'))
      if i < twin.n_dec - 1:
        layers += [getattr(twin, f'dec{i}_bn'), nn.LeakyReLU(0.2)]
  if merge:
    for i, bn in enumerate(layers):
      if isinstance(bn, nn.BatchNorm2d):
        layer = layers[i - 1]
        scale = bn.weight.data / torch.sqrt(bn.running_var + bn.eps)
        axis = 1 if isinstance(layer, nn.ConvTranspose2d) else 0   # output channels
        shape = [1] * layer.weight.ndim
        shape[axis] = -1
        layer.weight.data = layer.weight.data * scale.view(shape)
        layer.bias.data = (layer.bias.data - bn.running_mean) * scale + bn.bias.data
        layers[i] = nn.Identity()
  return nn.Sequential(*layers).eval()


def lrp(out: str) -> None:
  import zennit
  from safetensors.torch import load_file
  from zennit.canonizers import SequentialMergeBatchNorm
  from zennit.composites import EpsilonPlus, LayerMapComposite, SpecialFirstLayerMapComposite
  from zennit.rules import Epsilon, Pass, ZBox
  from zennit.types import Activation, Convolution, Linear

  from vadjax.bench.twins import TWINS
  torch.set_grad_enabled(True)
  z = np.load(f'{out}/lrp_inputs.npz')
  epsilon = lambda eps, canonizers=(): LayerMapComposite(
      layer_map=[(Activation, Pass()), (Convolution, Epsilon(eps)), (Linear, Epsilon(eps))],
      canonizers=list(canonizers))
  results = {}
  for name in json.loads(str(z['models'])):
    state = load_file(f'{out}/lrp_{name}.safetensors')
    twin = TWINS[name](**json.loads(str(z[f'{name}/kwargs'])))
    twin = twin.to(next(v.dtype for v in state.values() if v.is_floating_point())).eval()
    twin.load_state_dict(state)
    x = torch.from_numpy(z[f'{name}/x']).permute(0, 3, 1, 2)
    relevance = torch.from_numpy(z[f'{name}/relevance']).permute(0, 3, 1, 2)
    with torch.no_grad():
      results[f'{name}/sequential_vs_twin'] = float(
          (as_sequential(name, twin)(x) - twin(x)['recon']).abs().max())
    runs = {f'epsilon@{e:g}': (epsilon(e), True) for e in z['eps']}
    runs.update({f'epsilon_plus@{e:g}': (EpsilonPlus(epsilon=e, stabilizer=e), True)
                 for e in z['eps']})
    runs.update({f'epsilon_plus_box@{e:g}': (SpecialFirstLayerMapComposite(   # ZBox first
        layer_map=EpsilonPlus(epsilon=e, stabilizer=e).layer_map,
        first_map=[(Linear, ZBox(0., 1., stabilizer=e))]), True) for e in z['eps']})
    e = float(z['eps'][-1])
    runs[f'epsilon_zennit_canonizer@{e:g}'] = (epsilon(e, [SequentialMergeBatchNorm()]), False)
    for key, (composite, merge) in runs.items():
      model = as_sequential(name, twin, merge)
      xr = x.clone().requires_grad_(True)
      with composite.context(model) as modified:
        y = modified(xr)
        (r,) = torch.autograd.grad(y, xr, grad_outputs=relevance)
      results[f'{name}/{key}'] = r.permute(0, 2, 3, 1).detach().numpy()
      results.setdefault(f'{name}/output', y.permute(0, 2, 3, 1).detach().numpy())
      print(f'{name} {key}: Σ R_in {r.sum().item():.6g}, Σ R_out '
            f'{relevance.sum().item():.6g}', flush=True)
  np.savez(f'{out}/lrp_torch.npz', zennit=getattr(zennit, '__version__', '0.5.1'), **results)


if __name__ == '__main__':
  {'loaders': loaders, 'dino': dino, 'lrp': lrp}[sys.argv[1]](sys.argv[2])
