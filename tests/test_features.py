"""Seed 004: backbones and their checkpoint loaders, feature prediction, DINO, t-SNE."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from vadjax.bench.twins import backbones as twins
from vadjax.models import BACKBONES, checkpoints
from vadjax.models.vit import cubic_weights
from vadjax.registry import UserError


def _random_bn(twin):
  """BatchNorm statistics and affine parameters away from their initial values, so that a
  wrongly mapped one shows."""
  g = torch.Generator().manual_seed(1)
  for m in twin.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.running_mean.data = torch.randn(m.num_features, generator=g) * 0.1
      m.running_var.data = torch.rand(m.num_features, generator=g) + 0.5
      m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
      m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
  return twin.eval()


def _save(state: dict, path: str) -> str:
  if path.endswith('.pth'):
    torch.save(state, path)
  elif path.endswith('.safetensors'):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, path)
  else:
    np.savez(path, **{k: v.numpy() for k, v in state.items()})
  return path


@pytest.mark.parametrize('name,make,side,fmt', [
    ('vit_mini', lambda: twins.ViT(128, 4, 4, 8, 64), 64, '.pth'),
    ('vit_mini', lambda: twins.ViT(128, 4, 4, 8, 64), 48, '.safetensors'),  # resized grid
    ('resnet_mini', lambda: twins.ResNet((1, 1, 1, 1), 16), 64, '.npz'),
    ('resnet50', twins.ResNet, 64, '.pth'),
])
def test_loaded_backbones_give_the_pytorch_features(tmp_path, name, make, side, fmt):
  torch.manual_seed(0)
  twin = _random_bn(make())
  path = _save(twin.state_dict(), str(tmp_path / f'w{fmt}'))
  module, variables = checkpoints.load_backbone(name, path, 3, side)
  x = np.random.RandomState(0).rand(2, side, side, 3).astype(np.float32)
  out = jax.jit(module.apply)(variables, x)
  with torch.no_grad():
    ref = twin(torch.from_numpy(x))
  for key in ref:
    want = ref[key].numpy()
    np.testing.assert_allclose(np.asarray(out[key]), want, rtol=1e-4,
                               atol=2e-5 * np.abs(want).max(), err_msg=key)


def test_published_sizes_have_the_release_parameter_counts_and_names():
  """ViT-S/16 and ResNet-50 (without classifier): the DINO release's 21.67 M and
  torchvision's 23.51 M parameters, and exactly the references' state-dict names."""
  for name, twin, count in (('vit_s16', twins.ViT(), 21_665_664),
                            ('resnet50', twins.ResNet(), 23_508_032)):
    module = BACKBONES.get(name)()
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes['params'])) == count
    ours = {checkpoints.torch_name(tuple(p.key for p in path)[1:])
            for path, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]}
    theirs = {k for k in twin.state_dict() if not k.startswith('fc.')
              and not k.endswith('num_batches_tracked')}
    assert ours == theirs


def test_position_embedding_resize_is_pytorch_bicubic():
  """By size, and by the DINO release's scale factor (out + 0.1) / in, whose sample
  positions differ (2.0 vs 1.95 apart from 8 to 4)."""
  g = np.random.RandomState(0).randn(5, 5).astype(np.float32)
  for out in (3, 5, 8, 11):
    for scale in (None, (out + 0.1) / 5):
      ours = cubic_weights(5, out, scale) @ g @ cubic_weights(5, out, scale).T
      how = {'size': (out, out)} if scale is None else {'scale_factor': (scale, scale)}
      ref = torch.nn.functional.interpolate(torch.from_numpy(g)[None, None], mode='bicubic',
                                            align_corners=False, **how)[0, 0].numpy()
      np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_a_dino_training_checkpoint_gives_its_teacher(tmp_path):
  torch.manual_seed(0)
  teacher, student = twins.ViT(128, 4, 4, 8, 64), twins.ViT(128, 4, 4, 8, 64)
  prefixed = lambda m: {f'module.backbone.{k}': v for k, v in m.state_dict().items()}
  head = {'module.head.last_layer.weight_v': torch.zeros(3, 2)}
  torch.save({'teacher': {**prefixed(teacher), **head}, 'student': prefixed(student),
              'epoch': 100}, tmp_path / 'checkpoint.pth')
  weights = checkpoints.read_weights(str(tmp_path / 'checkpoint.pth'))
  np.testing.assert_array_equal(weights['cls_token'], teacher.cls_token.detach().numpy())
  assert not [k for k in weights if k.startswith(('head', 'module'))]


def test_wrong_or_crafted_weight_files_are_one_line_errors(tmp_path):
  twin = twins.ViT(128, 4, 4, 8, 64)
  state = {k: v.numpy() for k, v in twin.state_dict().items()}
  cases = {}
  broken = dict(state)
  del broken['norm.weight']
  broken['blocks.9.attn.qkv.weight'] = np.zeros((3, 3), np.float32)
  broken['pos_embed'] = np.zeros((1, 10, 128), np.float32)
  np.savez(tmp_path / 'broken.npz', **broken)
  cases['broken.npz'] = r'missing norm\.weight \(1\); unexpected blocks\.9.*mis-shaped pos_embed'
  resnet = tmp_path / 'resnet.pth'
  torch.save(twins.ResNet((1, 1, 1, 1), 16).state_dict(), resnet)
  cases['resnet.pth'] = r'missing blocks\.0.*\(54\); unexpected bn1'
  (tmp_path / 'huge.safetensors').write_bytes((10 ** 9).to_bytes(8, 'little') + b'{}')
  cases['huge.safetensors'] = 'header length'
  header = json.dumps({'cls_token': {'dtype': 'F32', 'shape': [1, 1, 128],
                                     'data_offsets': [0, 99999]}}).encode()
  (tmp_path / 'range.safetensors').write_bytes(len(header).to_bytes(8, 'little') + header
                                               + b'\0' * 16)
  cases['range.safetensors'] = 'does not fit its byte range'
  (tmp_path / 'text.npz').write_text('not a zip')
  cases['text.npz'] = 'not a readable .npz'
  torch.save({'model': torch.nn.Linear(2, 2)}, tmp_path / 'pickled.pth')   # a whole module
  cases['pickled.pth'] = 'not a readable weights-only torch checkpoint'
  (tmp_path / 'weights.h5').write_bytes(b'x')
  cases['weights.h5'] = 'unknown weights format'
  cases['absent.pth'] = 'does not exist'
  for name, message in cases.items():
    with pytest.raises(UserError, match=message):
      checkpoints.load_backbone('vit_mini', str(tmp_path / name), 3, 64)


def test_safetensors_reader_matches_the_package(tmp_path):
  from safetensors.numpy import save_file
  arrays = {'a': np.arange(12, dtype=np.float32).reshape(3, 4), 'b': np.ones(5, np.int64),
            'c': np.zeros((0, 2), np.float16)}
  save_file(arrays, str(tmp_path / 'x.safetensors'))
  got = checkpoints.read_safetensors(str(tmp_path / 'x.safetensors'))
  for k, v in arrays.items():
    np.testing.assert_array_equal(got[k], v)
    assert got[k].dtype == v.dtype


def test_exported_names_round_trip_into_the_pytorch_reference(tmp_path):
  module, variables = checkpoints.init_backbone('vit_mini', 3, 64, seed=3)
  checkpoints.save_npz(str(tmp_path / 'b.npz'), checkpoints.torch_named(variables))
  twin = twins.ViT(128, 4, 4, 8, 64)
  with np.load(tmp_path / 'b.npz') as z:
    twin.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files})
  x = np.random.RandomState(1).rand(1, 64, 64, 3).astype(np.float32)
  with torch.no_grad():
    ref = twin(torch.from_numpy(x))['cls'].numpy()
  np.testing.assert_allclose(np.asarray(jax.jit(module.apply)(variables, x)['cls']), ref,
                             rtol=1e-4, atol=1e-5)


# ---- feature prediction ----

def test_predictors_are_causal_and_predict_every_next_vector():
  from vadjax.models.feature_predictor import FeaturePredictor
  x = jnp.asarray(np.random.RandomState(0).randn(2, 6, 1, 1, 5), jnp.float32)
  later = x.at[:, 4:].set(9.0)               # change only the last two vectors
  for kind in ('lstm', 'transformer'):
    model = FeaturePredictor(channels=5, predictor=kind, hidden=8, layers=2, heads=2)
    v = jax.jit(model.init)(jax.random.key(0), x)
    apply = jax.jit(model.apply)
    out, out_later = apply(v, x), apply(v, later)
    assert out['prediction'].shape == (2, 5, 5)
    np.testing.assert_array_equal(out['target'], x[:, 1:, 0, 0])
    # predictions of vectors 1..4 read vectors 0..3 only
    np.testing.assert_allclose(out['prediction'][:, :4], out_later['prediction'][:, :4],
                               rtol=1e-6, atol=1e-6)
    assert not np.allclose(out['prediction'][:, 4], out_later['prediction'][:, 4])
  with pytest.raises(UserError, match=r'\(batch, T >= 2, 1, 1, 5\)'):
    FeaturePredictor(channels=5).init(jax.random.key(0), jnp.zeros((2, 6, 4, 4, 5)))


def test_distances_and_the_scored_position():
  from scipy.spatial import distance as sd
  from vadjax.methods.feature_prediction import FeaturePrediction, distance
  rng = np.random.RandomState(0)
  p, t = rng.randn(7, 6).astype(np.float32), rng.randn(7, 6).astype(np.float32)
  np.testing.assert_allclose(distance(p, t, 'l2'), [sd.sqeuclidean(a, b) / 6
                                                    for a, b in zip(p, t)], rtol=1e-5)
  np.testing.assert_allclose(distance(p, t, 'cosine'), [sd.cosine(a, b)
                                                        for a, b in zip(p, t)], rtol=1e-5)
  method = FeaturePrediction()
  pred = rng.randn(3, 4, 6).astype(np.float32)
  target = rng.randn(3, 4, 6).astype(np.float32)
  offsets = np.array([4, 2, 0])          # the clip's last frame; frame 2; a video's first
  score = method.score_fn({'prediction': pred, 'target': target},
                          {'image': np.zeros((3, 5, 1, 1, 6)), 'offset': offsets})['score']
  d = np.mean((pred - target) ** 2, -1)
  np.testing.assert_allclose(score, [d[0, 3], d[1, 1], d[2, 0]], rtol=1e-6)


def test_feature_prediction_trains_caches_and_restores(tmp_path, caplog):
  """The quick config end to end: features extracted once into the workdir's cache (a
  second run of the same data reads them), a finished report, `restore` scoring as the run."""
  from conftest import assert_restore_scores_as_the_run
  from experiments.configs import feature_prediction
  from vadjax.train import train_and_evaluate
  cfg = feature_prediction.get_config('quick,num_devices=1')
  report = train_and_evaluate(cfg, str(tmp_path / 'a'))
  assert 0.0 <= report['mean']['auroc']['mean'] <= 1.0
  cache = sorted(os.listdir(tmp_path / 'a' / 'cache'))
  assert len(cache) == 2 and cache[0].startswith('gray-') and cache[1] == 'gray.frontend.npz'
  folder = tmp_path / 'a' / 'cache' / cache[0]
  assert sorted(os.listdir(folder)) == ['test.npy', 'train.npy', 'val.npy']
  assert np.load(folder / 'test.npy').shape == (2 * 24, 128)     # two test videos
  # another experiment in the same folder tree with the cache copied: no extraction
  shutil.copytree(folder, tmp_path / 'b' / 'cache' / cache[0], copy_function=os.link)
  cfg = feature_prediction.get_config('quick,num_devices=1,model_kwargs.predictor=transformer')
  with caplog.at_level('INFO'):
    train_and_evaluate(cfg, str(tmp_path / 'b'))
  assert 'features of' not in caplog.text
  run = assert_restore_scores_as_the_run(tmp_path / 'b')
  assert run.image_shape == (4, 1, 1, 128)
  _served_on_frames_as_evaluated(run, tmp_path / 'b')
  with pytest.raises(UserError, match='needs a video dataset'):
    train_and_evaluate(feature_prediction.get_config('quick,dataset=digits'),
                       str(tmp_path / 'c'))


def _served_on_frames_as_evaluated(run, workdir):
  """The run scores raw frames end to end (backbone, standardisation, predictor) as its
  evaluation scored the cached features of the same test video, and exports so."""
  from conftest import assert_exports_score_as_the_run
  from vadjax.data import DATASETS
  from vadjax.serving.predict import Predictor
  video = DATASETS.get(run.config.dataset)(run.category, run.config.image_size,
                                            run.config.data).test.videos[0]
  frames = np.asarray(video.frames[:], np.float32)
  evaluated = np.load(os.path.join(run.run_dir, 'test_scores.npz'))['score'][:len(frames)]
  p = Predictor(run)
  assert (p.kind, p.anchor, p.format.shape) == ('clip', 3, frames.shape[1:])
  np.testing.assert_allclose(p.score(frames, video=True).raw, evaluated, rtol=1e-4)
  assert_exports_score_as_the_run(workdir, formats=('stablehlo',))


# ---- DINO ----

def test_dino_loss_centre_and_schedules_match_references():
  from vadjax.methods import dino
  s = dino.Settings(out_dim=7, local_crops=2)
  rng = np.random.RandomState(0)
  b = 3
  student, teacher = rng.randn(4 * b, 7).astype(np.float32), rng.randn(2 * b, 7)
  center = rng.randn(7).astype(np.float32) * 0.1
  loss, _ = dino.dino_loss(student, teacher.astype(np.float32), center, s, 0.05)
  softmax = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(
      z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
  t = softmax((teacher - center) / 0.05).reshape(2, b, 7)
  logp = np.log(softmax(student / 0.1)).reshape(4, b, 7)
  ref = np.mean([np.mean(-(t[a] * logp[v]).sum(-1)) for a in range(2) for v in range(4)
                 if v != a])
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  # DINO's cosine_scheduler (numpy, per iteration) and ours
  base, final, steps, warm = 0.5, 0.01, 40, 6
  iters = np.arange(steps - warm)
  ref = np.concatenate([np.linspace(0, base, warm), final + 0.5 * (base - final) * (
      1 + np.cos(np.pi * iters / len(iters)))])
  np.testing.assert_allclose(jax.vmap(dino.cosine(base, final, steps, warm))(np.arange(steps)),
                             ref, rtol=1e-5, atol=1e-7)


def test_dino_optimizer_is_the_releases_torch_adamw_with_its_clipping_and_freeze():
  """Against torch.optim.AdamW driven as the release drives it: lr and weight decay set
  per step (no decay on biases), each parameter's gradient clipped on its own, the last
  layer's gradient None while frozen (so torch neither decays it nor counts its steps)."""
  from vadjax.methods import dino
  s = dino.Settings(base_lr=0.05, warmup_steps=2, clip_grad=0.5, freeze_last_layer_steps=3,
                    teacher_temp_warmup_steps=4)
  steps, batch = 7, 256
  rng = np.random.RandomState(0)
  params = {'head': {'last_layer': rng.randn(3, 5), 'mlp0': {'kernel': rng.randn(4, 3),
                                                             'bias': rng.randn(3)}}}
  params = jax.tree.map(lambda a: a.astype(np.float32), params)
  grads = [jax.tree.map(lambda a: (rng.randn(*a.shape) * rng.choice([0.1, 3.0])).astype(
      np.float32), params) for _ in range(steps)]
  tx = dino.optimizer(s, batch, steps)
  state, ours = jax.jit(tx.init)(params), params

  @jax.jit
  def update(g, state, ours):
    updates, state = tx.update(g, state, ours)
    return optax.apply_updates(ours, updates), state
  lr = jax.vmap(dino.learning_rate(s, batch, steps))(np.arange(steps))
  wd = jax.vmap(dino.cosine(*s.weight_decay, steps))(np.arange(steps))
  names = ('last_layer', 'kernel', 'bias')
  theirs = [torch.nn.Parameter(torch.tensor(np.asarray(a))) for a in (
      params['head']['last_layer'], params['head']['mlp0']['kernel'],
      params['head']['mlp0']['bias'])]
  opt = torch.optim.AdamW([{'params': theirs[:2]}, {'params': theirs[2:], 'weight_decay': 0}])
  for i, g in enumerate(grads):
    ours, state = update(g, state, ours)
    for group in opt.param_groups:
      group['lr'] = float(lr[i])
    opt.param_groups[0]['weight_decay'] = float(wd[i])
    flat = (g['head']['last_layer'], g['head']['mlp0']['kernel'], g['head']['mlp0']['bias'])
    for p, a in zip(theirs, flat):
      p.grad = torch.tensor(np.asarray(a))
      norm = p.grad.norm(2)                         # the release's clip_gradients
      if s.clip_grad / (norm + 1e-6) < 1:
        p.grad.mul_(s.clip_grad / (norm + 1e-6))
    if i < s.freeze_last_layer_steps:              # cancel_gradients_last_layer
      theirs[0].grad = None
    opt.step()
    got = (ours['head']['last_layer'], ours['head']['mlp0']['kernel'],
           ours['head']['mlp0']['bias'])
    for name, a, p in zip(names, got, theirs):
      np.testing.assert_allclose(a, p.detach().numpy(), rtol=1e-5, atol=1e-5,
                                 err_msg=f'{name} at step {i}')
  np.testing.assert_array_equal(ours['head']['last_layer'] != params['head']['last_layer'], True)
  temps = jax.vmap(dino.teacher_temperature(s))(np.arange(6))
  np.testing.assert_allclose(temps, np.concatenate([np.linspace(*s.teacher_temp, 4),
                                                    [s.teacher_temp[1]] * 2]), rtol=1e-6)


def test_collapse_monitors_read_both_collapses():
  from vadjax.methods import dino
  k, n = 16, 8
  feats = np.random.RandomState(0).randn(n, 5).astype(np.float32)
  uniform = dino.monitors(np.full((n, k), 1 / k, np.float32), feats)
  np.testing.assert_allclose(uniform['teacher_entropy'], np.log(k), rtol=1e-5)
  one = dino.monitors(np.eye(k, dtype=np.float32)[np.zeros(n, int)], np.ones((n, 5)))
  assert float(one['teacher_batch_entropy']) < 1e-6 and float(one['feature_std']) < 1e-6
  spread = dino.monitors(np.eye(k, dtype=np.float32)[np.arange(n)], feats)
  np.testing.assert_allclose(spread['teacher_batch_entropy'], np.log(n), rtol=1e-5)


def test_dino_views_and_head():
  from vadjax.methods import dino
  s = dino.Settings(global_size=16, local_size=8, local_crops=3, out_dim=12, hidden=8,
                    bottleneck=4)
  images = jnp.asarray(np.random.RandomState(0).rand(5, 24, 24, 3), jnp.float32)
  glob, local = jax.jit(lambda x, r: dino.views(x, r, s))(images, jax.random.key(1))
  assert glob.shape == (10, 16, 16, 3) and local.shape == (15, 8, 8, 3)
  assert np.isfinite(glob).all() and not np.allclose(glob[:5], glob[5:])
  head = dino.DinoHead(12, 8, 4)
  x = jnp.ones((2, 6))
  v = head.init(jax.random.key(0), x)
  # cosines between the unit bottleneck and the unit columns of the last layer
  assert np.abs(np.asarray(head.apply(v, x))).max() <= 1.0 + 1e-6
  v['params']['last_layer'] = v['params']['last_layer'] * 7.0      # weight-normalised
  np.testing.assert_allclose(head.apply(v, x), head.apply(head.init(jax.random.key(0), x), x),
                             rtol=1e-5)


def test_dino_run_resumes_exactly_and_exports_its_teacher(tmp_path, capsys):
  """The quick DINO run: figures, report, backbone.npz loading into the ViT with the
  teacher's features; a run resumed from its step-4 checkpoint ends with the same teacher."""
  import shutil
  from experiments import dino as dino_cli
  from experiments.configs import dino as dino_config
  from conftest import figure
  cfg = dino_config.get_config('quick')
  report = dino_cli.run(cfg, str(tmp_path / 'a'))
  assert report['steps'] == 6 and np.isfinite(report['final']['loss'])
  assert [p['step'] for p in report['knn']['curve']] == [0, 3, 6]
  assert 0.1 < report['knn']['random_init'] <= 1 and 0 <= report['knn']['final'] <= 1
  for name in ('curves', 'attention'):
    figure(report['figures'][name])
  module, variables = checkpoints.load_backbone('vit_mini', str(tmp_path / 'a/backbone.npz'),
                                                3, 32)
  first = np.load(tmp_path / 'a/backbone.npz')
  shutil.copytree(tmp_path / 'a', tmp_path / 'b')
  shutil.rmtree(tmp_path / 'b/checkpoints/6')
  os.remove(tmp_path / 'b/backbone.npz')
  resumed = dino_cli.run(cfg, str(tmp_path / 'b'))
  np.testing.assert_allclose([p['knn_accuracy'] for p in resumed['knn']['curve']],
                             [p['knn_accuracy'] for p in report['knn']['curve']], atol=1e-6)
  second = np.load(tmp_path / 'b/backbone.npz')
  for k in first.files:
    np.testing.assert_allclose(second[k], first[k], rtol=1e-6, atol=1e-7, err_msg=k)
  x = np.random.RandomState(0).rand(2, 32, 32, 3).astype(np.float32)
  assert np.asarray(jax.jit(module.apply)(variables, x)['cls']).std() > 0
  with pytest.raises(UserError, match='another experiment'):
    dino_cli.run(dino_config.get_config('quick,seed=1'), str(tmp_path / 'b'))


def test_lstm_predictor_matches_its_pytorch_twin():
  from vadjax.models.feature_predictor import FeaturePredictor
  x = np.random.RandomState(0).randn(3, 7, 1, 1, 6).astype(np.float32)
  model = FeaturePredictor(channels=6, hidden=5, layers=2)
  v = jax.jit(model.init)(jax.random.key(0), x)
  twin = twins.LSTMPredictor(6, hidden=5, layers=2).load_flax(v['params'])
  with torch.no_grad():
    ref = twin(torch.from_numpy(x))['prediction'].numpy()
  np.testing.assert_allclose(jax.jit(model.apply)(v, x)['prediction'], ref, rtol=1e-5,
                             atol=1e-6)


def test_tsne_views_aggregate_videos_by_max():
  from sklearn.manifold import TSNE
  from vadjax.eval import tsne
  rng = np.random.RandomState(0)
  x = rng.randn(30, 4).astype(np.float32)
  labels = (np.arange(30) % 7 == 0).astype(int)
  videos = np.repeat([0, 1, 2], 10)
  vx, vl = tsne.per_video_max(x, labels, videos)
  np.testing.assert_array_equal(vx[1], x[10:20].max(0))
  np.testing.assert_array_equal(vl, [1, 1, 1])
  emb = tsne.embeddings(x, labels, videos, perplexity=5, max_iter=250)
  ref = TSNE(2, perplexity=5, max_iter=250, init='pca', random_state=0).fit_transform(
      x.astype(np.float64))
  np.testing.assert_allclose(emb['frames'], ref, rtol=1e-4, atol=1e-4)
  assert emb['videos'].shape == (3, 2)          # perplexity capped for 3 videos


def test_seed004_study_quick(tmp_path):
  """The sweep's seed004 study end to end at quick size, two rows: DINO pretrained into
  <workdir>/dino and its backbone used by the DINO row; the table beside the seed's
  numbers; the t-SNE figure from the rows' caches."""
  from conftest import figure, sweep_in_fresh_process
  out = sweep_in_fresh_process(
      "sweep.run('seed004', w, ['0'], preset='quick', "
      "only=['DINO ViT-mini + LSTM', 'random ViT-mini + LSTM'])", tmp_path)
  assert os.path.exists(tmp_path / 'dino' / 'backbone.npz')
  with open(tmp_path / 'DINO_ViT_mini_LSTM_walkway' / 'config.json') as f:
    assert json.load(f)['features']['weights'] == str(tmp_path / 'dino' / 'backbone.npz')
  assert '88.54 ± 0.22' in out['table'] and len(out['rows']) == 2
  figure(out['figure'])


def test_dino_config_reads_image_and_video_datasets():
  """DINO pretrains on any dataset's training frames (RGB), and `quick` is quick in any
  word order."""
  from experiments import dino as dino_cli
  from experiments.configs import dino as dino_config
  a = dino_config.get_config('quick,dataset=digits,categories=all')
  assert a.to_dict() == dino_config.get_config('dataset=digits,categories=all,quick').to_dict()
  assert a.steps <= 10
  frames = dino_cli.TrainingFrames(a)
  assert frames.shape[1:] == (32, 32, 3) and len(frames) > 500
  video = dino_cli.TrainingFrames(dino_config.get_config('quick'))
  assert video.shape == (24, 32, 32, 3)
  # read by index, grey frames as RGB, in the order of the videos' frames
  x = video[[0, 23, 5]]
  first = np.asarray(video.parts[0][0])
  assert x.shape == (3, 32, 32, 3) and np.array_equal(x[0], np.repeat(first, 3, -1))
  with pytest.raises(UserError, match='unknown digits categories'):
    dino_cli.TrainingFrames(dino_config.get_config('quick,dataset=digits,categories=x'))
  # several sources joined by '+', each with its categories (or the config's)
  mixed = dino_cli.TrainingFrames(dino_config.get_config('quick,dataset=digits:all+walkway:gray'))
  assert len(mixed) == len(frames) + len(video)
  np.testing.assert_array_equal(mixed[[len(frames)]], video[[0]])


def test_knn_probe_votes_as_scikit_learn():
  """The DINO k-NN vote (cosine, weights exp(s / t)) against scikit-learn's classifier
  with the same weights."""
  from sklearn.neighbors import KNeighborsClassifier
  from experiments.dino import knn_accuracy
  rng = np.random.RandomState(0)
  labels = rng.randint(0, 4, 300)
  features = rng.randn(300, 8) + 1.5 * np.eye(8)[labels]
  fit, test = np.arange(200), np.arange(200, 300)
  ours = knn_accuracy(features, labels, fit, test, k=7, t=0.07)
  ref = KNeighborsClassifier(7, metric='cosine', weights=lambda d: np.exp((1 - d) / 0.07))
  ref.fit(features[fit], labels[fit])
  assert ours == pytest.approx(ref.score(features[test], labels[test]), abs=1e-9)
  assert 0.5 < ours < 1.0
