"""Published backbone checkpoints → Flax variables (seed 004: DINO's ViTs, torchvision's
ResNet-50), matched by name.

Files: `.pth`/`.pt` through `torch.load(..., weights_only=True)` (tensors and containers
only, never arbitrary pickles; needs torch), `.safetensors` (read here: an 8-byte header
length, a JSON header of dtype/shape/offsets, raw little-endian data) and `.npz` (numpy,
`allow_pickle=False`). A DINO training checkpoint ({'teacher': ..., 'student': ...}) gives
its teacher; `module.` and `backbone.` prefixes are dropped, and so are the classifier or
projection head (`head.*`, `fc.*`), which a frozen feature extractor does not use.

Names: the Flax path `blocks_3/attn/qkv/kernel` is the torch key `blocks.3.attn.qkv.weight`
(`_<n>` → `.<n>`; kernel/scale → weight, BatchNorm mean/var → running_mean/running_var).
Conv kernels (O, I, kh, kw) → (kh, kw, I, O); linear (O, I) → (I, O).
"""

import json
import os
import re
import tempfile

import jax
import numpy as np
from absl import logging

from vadjax.registry import UserError

DROPPED = ('head.', 'fc.')           # heads a feature extractor does not use
LEAVES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
          'var': 'running_var'}
SAFETENSORS_DTYPES = {'F64': '<f8', 'F32': '<f4', 'F16': '<f2', 'BF16': '<u2', 'I64': '<i8',
                      'I32': '<i4', 'I16': '<i2', 'I8': 'i1', 'U8': 'u1', 'BOOL': '?'}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """The tensors of a .safetensors file (bf16 widened to float32); a malformed file is a
  UserError naming what is wrong."""
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    head = f.read(8)
    if len(head) < 8:
      raise UserError(f'{path}: not a safetensors file (shorter than its header length)')
    n = int.from_bytes(head, 'little')
    if n > size - 8 or n > 100 << 20:
      raise UserError(f'{path}: not a safetensors file (header length {n} > file size)')
    try:
      header = json.loads(f.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise UserError(f'{path}: not a safetensors file (header is not JSON: {e})') from None
    data = f.read()
  out = {}
  for name, spec in header.items():
    if name == '__metadata__':
      continue
    try:
      dtype = np.dtype(SAFETENSORS_DTYPES[spec['dtype']])
      shape = tuple(int(s) for s in spec['shape'])
      start, end = (int(o) for o in spec['data_offsets'])
    except (KeyError, TypeError, ValueError):
      raise UserError(f'{path}: tensor {name!r} has a malformed entry {spec!r}') from None
    if not 0 <= start <= end <= len(data) or end - start != dtype.itemsize * int(
        np.prod(shape)) or min(shape, default=0) < 0:
      raise UserError(f'{path}: tensor {name!r} ({spec["dtype"]} {shape}) does not fit its '
                      f'byte range {start}..{end} of {len(data)}')
    a = np.frombuffer(data[start:end], dtype).reshape(shape)
    if spec['dtype'] == 'BF16':
      a = (a.astype(np.uint32) << 16).view(np.float32)
    out[name] = a
  return out


def _read_torch(path: str) -> dict:
  try:
    import torch  # noqa: PLC0415  (optional: only .pth files need it)
  except ImportError:
    raise UserError(f'{path}: reading .pth files needs torch (pip install torch); or convert '
                    'it to .safetensors or .npz') from None
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # noqa: BLE001  (torch raises many kinds for a bad file)
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise UserError(f'{path}: not a readable weights-only torch checkpoint ({reason})') \
        from None
  for key in ('teacher', 'state_dict', 'model'):   # DINO training checkpoints, others
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      obj = obj[key]
  if not isinstance(obj, dict):
    raise UserError(f'{path}: holds a {type(obj).__name__}, not a dict of tensors')
  return {k: v.float().numpy() if v.is_floating_point() else v.numpy()
          for k, v in obj.items() if isinstance(v, torch.Tensor)}


def read_weights(path: str) -> dict[str, np.ndarray]:
  """Name → array of a checkpoint file, with prefixes and unused heads dropped."""
  if not os.path.isfile(path):
    raise UserError(f'weights file {path!r} does not exist')
  ext = os.path.splitext(path)[1].lower()
  if ext in ('.pth', '.pt'):
    raw = _read_torch(path)
  elif ext == '.safetensors':
    raw = read_safetensors(path)
  elif ext == '.npz':
    try:
      with np.load(path, allow_pickle=False) as z:
        raw = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
      raise UserError(f'{path}: not a readable .npz file ({e})') from None
  else:
    raise UserError(f'{path}: unknown weights format {ext!r}; use .pth, .safetensors or .npz')
  weights, dropped = {}, []
  for key, value in raw.items():
    name = re.sub(r'^(module\.)?(backbone\.)?', '', key)
    if name.startswith(DROPPED) or name.endswith('num_batches_tracked'):
      dropped.append(name)
    else:
      weights[name] = np.asarray(value)
  if dropped:
    logging.info('%s: not used by the feature extractor: %d tensors (%s ...)', path,
                 len(dropped), dropped[0])
  return weights


def torch_name(path: tuple[str, ...]) -> str:
  """Flax variable path → torch state-dict key."""
  *mods, leaf = path
  mods = [re.sub(r'_(\d+)$', r'.\1', m) for m in mods]
  return '.'.join(mods + [LEAVES.get(leaf, leaf)])


def to_flax(value: np.ndarray, template_shape: tuple) -> np.ndarray:
  """A torch tensor in the layout of the Flax variable of `template_shape`."""
  if value.ndim == 4 and len(template_shape) == 4:        # conv (O, I, kh, kw)
    value = value.transpose(2, 3, 1, 0)
  elif value.ndim == 2 and len(template_shape) == 2:      # linear (O, I)
    value = value.T
  return value


def load_variables(weights: dict[str, np.ndarray], template: dict, source: str) -> dict:
  """Flax variables shaped as `template` (e.g. `jax.eval_shape(model.init, ...)`) from
  torch-named `weights`; names missing, unexpected or mis-shaped are one error."""
  flat = jax.tree_util.tree_flatten_with_path(template)[0]
  out, missing, misshaped, used = [], [], [], set()
  for path, leaf in flat:
    keys = tuple(p.key for p in path)
    name = torch_name(keys[1:])            # without the collection (params, batch_stats)
    if name not in weights:
      missing.append(name)
      out.append(None)
      continue
    used.add(name)
    value = to_flax(weights[name], leaf.shape)
    if value.shape != tuple(leaf.shape):
      misshaped.append(f'{name} {weights[name].shape} (expected {tuple(leaf.shape)} in '
                       'Flax layout)')
    out.append(value.astype(np.float32))
  unexpected = sorted(set(weights) - used)
  problems = [f'{what} {", ".join(names[:4])}{" ..." if len(names) > 4 else ""} '
              f'({len(names)})' for what, names in (('missing', missing),
                                                    ('unexpected', unexpected),
                                                    ('mis-shaped', misshaped)) if names]
  if problems:
    raise UserError(f'{source} does not fit this backbone: {"; ".join(problems)}; check the '
                    'backbone name (features.backbone) against the file')
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), out)


def init_backbone(name: str, channels: int, side: int, seed: int = 0):
  """(module, variables) of backbone `name`, randomly initialised for (side, side, channels)
  inputs."""
  module = _module(name, channels)
  x = np.zeros((1, side, side, channels), np.float32)
  return module, jax.jit(module.init)(jax.random.key(seed), x)


def _module(name: str, channels: int):
  from vadjax.models import BACKBONES  # noqa: PLC0415  (models imports this module's users)
  return BACKBONES.get(name)(channels=channels)


def load_backbone(name: str, path: str, channels: int, side: int):
  """(module, variables) of backbone `name` with the weights of checkpoint file `path`."""
  module = _module(name, channels)
  x = jax.ShapeDtypeStruct((1, side, side, channels), np.float32)
  template = jax.eval_shape(module.init, jax.random.key(0), x)
  return module, load_variables(read_weights(path), template, path)


def torch_named(variables: dict) -> dict[str, np.ndarray]:
  """Flax variables → torch-named, torch-layout arrays (the inverse of `load_variables`),
  so that a backbone trained here loads in the DINO release's PyTorch code too."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    keys = tuple(p.key for p in path)
    a = np.asarray(leaf)
    a = a if a.dtype == np.float64 else a.astype(np.float32)   # float64: the reference lane
    if a.ndim == 4:
      a = a.transpose(3, 2, 0, 1)
    elif a.ndim == 2:
      a = a.T
    out[torch_name(keys[1:])] = a
  return out


def save_npz(path: str, arrays: dict) -> None:
  """Writes arrays to `path` through a temporary file and a rename, so that an interrupted
  or concurrent writer never leaves a half file under that name."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix='.npz', dir=os.path.dirname(os.path.abspath(path)))
  with os.fdopen(fd, 'wb') as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)
