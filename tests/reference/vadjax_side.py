"""The vadjax side of the reference lane (tests/reference/run.sh): writes what the PyTorch
side needs (`inputs OUT`) and compares its answers with vadjax's (`check OUT`), writing
OUT/report.json and printing one line per check with its measured error.

Checks and their bars:
  loaders  vadjax's backbones on torchvision's / timm's random weights (.pth, .safetensors,
           a DINO training checkpoint) against those libraries' own features: max |Δ| over
           max |reference| ≤ 1e-4
  dino     20 DINO steps of vit_mini on the same initial weights and crops (every schedule
           moving within them, the last layer thawing at step 5), in float64: loss, KoLeo
           term, centre, teacher entropy and every parameter of student and teacher,
           relative ≤ 1e-4 (the float32 run is reported: rounding alone, amplified)
  lrp      ε-LRP and EpsilonPlus maps of BCAE1 and the deep AE against zennit's (BatchNorm
           merged, activations passing relevance), at ε = 1e-9: max |Δ| over max |R|
           ≤ 1e-5 (more in `check_lrp`)
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from vadjax.explain import lrp as lrp_lib
from vadjax.explain.target import output_relevance
from vadjax.methods import dino
from vadjax.models import BACKBONES, MODELS, checkpoints

DINO_STEPS, DINO_BATCH = 20, 8
DINO = dino.Settings(base_lr=0.05, warmup_steps=5, teacher_temp_warmup_steps=10,
                     freeze_last_layer_steps=5, out_dim=512)
VIT = {'dim': 128, 'depth': 4, 'heads': 4, 'patch': 8}          # vit_mini
LRP_MODELS = {'bcae1': 64, 'deep_ae': 32}                        # name: image side
LRP_EPS = (1e-9, 1e-6)     # judged at the first; the second is the explainers' default
BARS = {'loaders': 1e-4, 'dino': 1e-4, 'lrp': 1e-5}


def _head_names(head: dict) -> dict:
  """vadjax's DinoHead params → the release's DINOHead state-dict names and layouts."""
  out = {}
  for ours, theirs in (('mlp0', 'mlp.0'), ('mlp1', 'mlp.2'), ('mlp2', 'mlp.4')):
    out[f'head.{theirs}.weight'] = np.asarray(head[ours]['kernel']).T
    out[f'head.{theirs}.bias'] = np.asarray(head[ours]['bias'])
  v = np.asarray(head['last_layer'])
  out['head.last_layer.weight_v'] = v.T
  out['head.last_layer.weight_g'] = np.ones((v.shape[1], 1), np.float32)
  return out


def torch_named(params) -> dict:
  backbone = checkpoints.torch_named({'params': params['backbone']})
  return {**{f'backbone.{k}': v for k, v in backbone.items()}, **_head_names(params['head'])}


def dino_inputs(out: str, dtype) -> None:
  """Initial weights, every step's crops and vadjax's own 20 steps on them."""
  s = DINO
  model = dino.Dino(BACKBONES.get('vit_mini')(channels=3, dtype=dtype),
                    dino.DinoHead(s.out_dim, s.hidden, s.bottleneck, s.norm_last_layer))
  tx = dino.optimizer(s, DINO_BATCH, DINO_STEPS)
  state = dino.init_state(model, tx, jax.random.PRNGKey(0), s)
  student = jax.tree.map(lambda a: a.astype(dtype), state.student)
  state = state.replace(student=student, teacher=student, opt_state=tx.init(student),
                        center=state.center.astype(dtype))
  init = torch_named(state.student)
  update = jax.jit(dino.make_update(model, tx, s, DINO_STEPS))
  make_views = jax.jit(lambda x, k: dino.views(x, k, s))
  rng = np.random.RandomState(0)
  pool = np.stack([ndimage.gaussian_filter(rng.rand(96, 96, 3), (s_, s_, 0))
                   for s_ in rng.uniform(1, 6, 64)]).astype(np.float32)
  pool = (pool - pool.min((1, 2, 3), keepdims=True)) / np.ptp(pool, (1, 2, 3), keepdims=True)
  crops, metrics = {}, []
  for i in range(DINO_STEPS):
    images = pool[rng.choice(len(pool), DINO_BATCH, replace=False)]
    glob, local = (a.astype(dtype) for a in make_views(jnp.asarray(images),
                                                        jax.random.key(100 + i)))
    crops[f'global_{i}'] = np.asarray(glob).transpose(0, 3, 1, 2)
    crops[f'local_{i}'] = np.asarray(local).transpose(0, 3, 1, 2)
    state, m = update(state, glob, local)
    metrics.append({k: np.asarray(v) for k, v in m.items()})
    metrics[-1]['center'] = np.asarray(state.center)
  settings = {**{k: getattr(s, k) for k in s.__dataclass_fields__}, **VIT,
              'steps': DINO_STEPS, 'batch_size': DINO_BATCH}
  np.savez(f'{out}/dino_inputs.npz', settings=json.dumps(settings),
           **{f'init/{k}': v for k, v in init.items()}, **crops)
  np.savez(f'{out}/dino_vadjax.npz', loss=[m['loss'] for m in metrics],
           koleo=[m['koleo'] for m in metrics], center=[m['center'] for m in metrics],
           teacher_entropy=[m['teacher_entropy'] for m in metrics],
           **{f'student/{k}': v for k, v in torch_named(state.student).items()},
           **{f'teacher/{k}': v for k, v in torch_named(state.teacher).items()},
           **{f'init/{k}': v for k, v in init.items()})


def lrp_inputs(out: str, dtype) -> None:
  """Each model's weights as its PyTorch twin's state dict, inputs, output relevance (the
  explanations' squared error over its count) and vadjax's ε-LRP maps."""
  from safetensors.torch import save_file  # noqa: PLC0415  (reference venv only)

  from vadjax.bench.twins import TWINS, port  # noqa: PLC0415
  arrays = {'models': json.dumps(list(LRP_MODELS)), 'eps': np.array(LRP_EPS)}
  for name, side in LRP_MODELS.items():
    model = MODELS.get(name)(channels=1, dtype=dtype)
    x = jnp.asarray(np.random.RandomState(1).rand(3, side, side, 1), dtype)
    v = model.init(jax.random.PRNGKey(1), x)
    _, stats = model.apply(v, x, train=True, mutable=['batch_stats'])   # non-trivial BN
    v = jax.tree.map(lambda a: a.astype(dtype), {'params': v['params'], **stats})
    kwargs = {'channels': 1, 'input_size': [side, side]}
    save_file({k: t.contiguous() for k, t in port(TWINS[name](**kwargs), v).state_dict().items()},
              f'{out}/lrp_{name}.safetensors')
    f = lambda x, v=v, model=model: model.apply(v, x)['recon']
    y = f(x)
    relevance = output_relevance(y, x, x.shape[0])
    arrays.update({f'{name}/x': np.asarray(x), f'{name}/relevance': np.asarray(relevance),
                   f'{name}/kwargs': json.dumps(kwargs), f'{name}/recon': np.asarray(y),
                   **{f'{name}/vadjax@{e:g}': np.asarray(lrp_lib.lrp(f, x, relevance, e))
                      for e in LRP_EPS},
                   **{f'{name}/vadjax_plus@{e:g}': np.asarray(lrp_lib.lrp(
                       f, x, relevance, e, 'epsilon_plus')) for e in LRP_EPS},
                   **{f'{name}/vadjax_box@{e:g}': np.asarray(lrp_lib.lrp(
                       f, x, relevance, e, 'epsilon_plus_box')) for e in LRP_EPS}})
  np.savez(f'{out}/lrp_inputs.npz', **arrays)


def inputs(out: str, precision: str) -> None:
  """`precision` float64 (the judged run: rounding cannot hide a difference of method) or
  float32 (reported: what rounding alone does over the 20 steps)."""
  if precision == 'float64':
    jax.config.update('jax_enable_x64', True)
  dtype = {'float32': jnp.float32, 'float64': jnp.float64}[precision]
  os.makedirs(f'{out}/{precision}', exist_ok=True)
  lrp_inputs(f'{out}/{precision}', dtype)
  dino_inputs(f'{out}/{precision}', dtype)


# ---- checks ----

def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def check_loaders(out: str) -> dict:
  from tests.reference.torch_side import LOADERS  # noqa: PLC0415
  found = {}
  for name in LOADERS:
    ref = np.load(f'{out}/loaders/{name}_features.npz')
    files = [f'{name}.pth', f'{name}.safetensors'] + (
        [f'{name}_dino_checkpoint.pth'] if name == 'vit_s16' else [])
    for file in files:
      module, variables = checkpoints.load_backbone(name, f'{out}/loaders/{file}', 3, 224)
      got = jax.jit(module.apply)(variables, ref['x'])
      found[file] = max(_rel(got[k], ref[k]) for k in ref.files if k != 'x')
  return found


def check_dino(out: str) -> dict:
  ours, theirs = np.load(f'{out}/dino_vadjax.npz'), np.load(f'{out}/dino_torch.npz')
  found = {'loss': float(np.max(np.abs(ours['loss'] - theirs['loss']) / np.abs(theirs['loss']))),
           'koleo': float(np.max(np.abs(ours['koleo'] - theirs['koleo'])
                                 / np.abs(theirs['koleo']))),
           'teacher_entropy': float(np.max(np.abs(ours['teacher_entropy']
                                                  - theirs['teacher_entropy'])
                                           / theirs['teacher_entropy'])),
           'center': max(float(np.linalg.norm(a - b) / np.linalg.norm(b))
                         for a, b in zip(ours['center'], theirs['center']))}
  params, updates = {}, {}
  for key in ours.files:
    if key.startswith(('student/', 'teacher/')):
      a, b = ours[key], theirs[key]
      params[key] = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
      moved = b - ours['init/' + key.split('/', 1)[1]]
      if np.linalg.norm(moved) > 0:
        updates[key] = float(np.linalg.norm(a - b) / np.linalg.norm(moved))
  worst = max(params, key=params.get)
  found.update({'parameters': params[worst], 'parameters_worst': worst,
                'update_of_worst_moved': max(updates.values()),
                'update_worst': max(updates, key=updates.get),
                'loss_first_last': [float(theirs['loss'][0]), float(theirs['loss'][-1])]})
  return found


def check_lrp(out: str) -> dict:
  """Judged: the ε and EpsilonPlus maps at ε = 1e-9 (`{name}/epsilon`,
  `{name}/epsilon_plus`; EpsilonPlus: z⁺ on convolutions with stabiliser ε, ε on dense
  layers), and EpsilonPlus with zennit's ZBox over [0, 1] on the first layer
  (`{name}/epsilon_plus_box`). Reported: both at ε = 1e-6, where vadjax's ε (at each activation) and zennit's
  (at each linear layer) differ where two affine layers meet without an activation between
  (the deep AE's last dense layer and first transposed conv), by an amount proportional to
  ε; zennit's own BatchNorm canonizer; EpsilonPlus against ε; and each rule's
  Σ R_in / Σ R_out (biases and BatchNorm shifts absorb relevance)."""
  ours, theirs = np.load(f'{out}/lrp_inputs.npz'), np.load(f'{out}/lrp_torch.npz')
  lo, hi = (f'{e:g}' for e in LRP_EPS)
  found = {}
  for name in LRP_MODELS:
    total = float(ours[f'{name}/relevance'].sum())
    found[f'{name}/epsilon'] = _rel(ours[f'{name}/vadjax@{lo}'], theirs[f'{name}/epsilon@{lo}'])
    found[f'{name}/recon'] = _rel(ours[f'{name}/recon'], theirs[f'{name}/output'])
    found[f'{name}/epsilon@{hi}'] = _rel(ours[f'{name}/vadjax@{hi}'],
                                          theirs[f'{name}/epsilon@{hi}'])
    found[f'{name}/epsilon@{hi}_zennit_canonizer'] = _rel(
        ours[f'{name}/vadjax@{hi}'], theirs[f'{name}/epsilon_zennit_canonizer@{hi}'])
    found[f'{name}/sequential_vs_twin'] = float(theirs[f'{name}/sequential_vs_twin'])
    found[f'{name}/conservation_epsilon'] = float(ours[f'{name}/vadjax@{hi}'].sum()) / total
    found[f'{name}/epsilon_plus'] = _rel(ours[f'{name}/vadjax_plus@{lo}'],
                                         theirs[f'{name}/epsilon_plus@{lo}'])
    found[f'{name}/epsilon_plus@{hi}'] = _rel(ours[f'{name}/vadjax_plus@{hi}'],
                                              theirs[f'{name}/epsilon_plus@{hi}'])
    plus = theirs[f'{name}/epsilon_plus@{hi}']
    found[f'{name}/conservation_epsilon_plus'] = float(plus.sum()) / total
    found[f'{name}/conservation_epsilon_plus_vadjax'] = float(
        ours[f'{name}/vadjax_plus@{hi}'].sum()) / total
    found[f'{name}/epsilon_plus_vs_epsilon_corr'] = float(
        np.corrcoef(plus.ravel(), theirs[f'{name}/epsilon@{hi}'].ravel())[0, 1])
    found[f'{name}/epsilon_plus_box'] = _rel(ours[f'{name}/vadjax_box@{lo}'],
                                             theirs[f'{name}/epsilon_plus_box@{lo}'])
    found[f'{name}/conservation_epsilon_plus_box'] = float(
        theirs[f'{name}/epsilon_plus_box@{hi}'].sum()) / total
  return found


def check(out: str) -> None:
  report, failed = {}, []
  for what, fn, keys, where in (
      ('loaders', check_loaders, None, out),
      ('dino', check_dino, ('loss', 'koleo', 'center', 'teacher_entropy', 'parameters'),
       f'{out}/float64'),
      ('lrp', check_lrp, None, f'{out}/float64'),
      ('dino_float32', check_dino, (), f'{out}/float32'),
      ('lrp_float32', check_lrp, (), f'{out}/float32')):
    found = fn(where)
    report[what] = found
    judged = [k for k in found if k.endswith(('.pth', '.safetensors', '/epsilon',
                                              '/epsilon_plus', '/epsilon_plus_box', '/recon'))
              ] if keys is None else keys
    for k in judged:
      ok = found[k] <= BARS[what]
      failed += [] if ok else [f'{what} {k}']
      print(f'{what:12s} {k:38s} {found[k]:.2e}  (bar {BARS[what]:.0e}) '
            f'{"ok" if ok else "FAILED"}', flush=True)
    for k in sorted(set(found) - set(judged)):
      print(f'{what:12s} {k:38s} {found[k]}', flush=True)
  report['versions'] = {'jax': jax.__version__, **json.load(open(f'{out}/loaders/versions.json'))}
  report['failed'] = failed
  with open(f'{out}/report.json', 'w') as f:
    json.dump(report, f, indent=1)
  if failed:
    sys.exit(f'reference checks failed: {", ".join(failed)}')


if __name__ == '__main__':
  {'inputs': inputs, 'check': check}[sys.argv[1]](*sys.argv[2:])
