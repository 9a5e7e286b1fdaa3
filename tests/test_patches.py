"""The UCSD patch protocol (METHODS.md §0, vadjax/data/patches.py): the patch grid, the
frame score as the max over patches, and its errors."""

import jax
import numpy as np
import pytest

from experiments.configs import adacl as adacl_cfg, alps as alps_cfg
from vadjax import parallel
from vadjax.data import patches
from vadjax.data.video import Video
from vadjax.methods import METHODS
from vadjax.models import MODELS
from vadjax.registry import UserError
from vadjax.train import steps as steps_lib
from vadjax.train import train_and_evaluate

KEYS = [jax.random.PRNGKey(i) for i in range(12)]

def _videos(n=2, t=5, size=12):
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    frames = np.zeros((t, size, size, 1), np.float32)
    frames[:, :4, :4] = rng.random((t, 4, 4, 1))        # only the top-left corner moves
    labels = np.array([0, 1] * (t // 2) + [0] * (t % 2), np.int32)
    out.append(Video(frames, labels, labels * 2, None, f'v{i}'))
  return out


def test_patch_grid_and_sources():
  assert patches.grid(12, 12, 5, 5) == [(y, x) for y in (0, 5, 7) for x in (0, 5, 7)]
  vids = _videos()
  train = patches.TrainPatches(vids, 4, 4)
  assert len(train) == 2 * 5 * 9
  moving = patches.TrainPatches(vids, 4, 4, min_change=0.05)
  flat = [v.frames[t] for v in vids for t in range(5)]          # the moving patch only
  assert len(moving) == 2 * 5
  for i in range(10):
    np.testing.assert_array_equal(moving[i]['image'], flat[i][:4, :4])
  # the change between frames, read in batches, equals it computed whole
  long = np.random.default_rng(1).random((150, 6, 6, 3), np.float32)
  d = np.abs(np.diff(long, axis=0)).mean(-1)
  np.testing.assert_allclose(np.stack(list(patches._changes(long))),
                             np.concatenate([d[:1], d]), rtol=1e-6)
  stacks = patches.PatchStacks(vids, 6, 6)
  r = stacks[7]                                                  # video 1, frame 2
  assert r['image'].shape == (4, 6, 6, 1) and int(r['video']) == 1 and int(r['frame']) == 2
  np.testing.assert_array_equal(r['image'][3], vids[1].frames[2, 6:, 6:])
  np.testing.assert_array_equal(stacks.array('label'), np.r_[vids[0].labels, vids[1].labels])
  with pytest.raises(UserError, match='patches.min_change'):
    patches.TrainPatches(vids, 4, 4, min_change=2.0)


@pytest.mark.parametrize('name', ['adacl', 'alps'])
def test_frame_score_is_the_max_over_patches(name):
  if name == 'adacl':
    model = MODELS.get('adacl_cnn')(channels=1, filters=(4, 4, 4, 4), hidden=4)
    cfg, extra = adacl_cfg.get_config(), 'score/raw'
  else:
    model = MODELS.get('alps')(channels=1, latent_dim=4, filters=(4, 4, 4),
                               distorter_filters=(4, 4, 4))
    cfg, extra = alps_cfg.get_config(), 'score/clean'
  method = METHODS.get(name)(cfg)
  steps = steps_lib.build_steps(model, method, method.optimizer(cfg.optimizer, steps_lib.make_optimizer),
                                parallel.make_mesh(1), (16, 16, 1))
  state = steps.init(KEYS[0])
  stacks = np.random.default_rng(0).random((3, 5, 16, 16, 1), np.float32)
  out = steps.score(state, {'image': stacks})
  each = steps.score(state, {'image': stacks.reshape(15, 16, 16, 1)})
  for key in ('score', extra):
    np.testing.assert_allclose(out[key], np.asarray(each[key]).reshape(3, 5).max(1),
                               rtol=1e-6)
  top = np.asarray(each['score']).reshape(3, 5).argmax(1)
  np.testing.assert_array_equal(out['patch'], top)
  weight = np.array([1, 1, 0], np.float32)    # the validation loss: every patch counted
  np.testing.assert_allclose(steps.loss(state, {'image': stacks, 'weight': weight}),
                             steps.loss(state, {'image': stacks[:2].reshape(10, 16, 16, 1)}),
                             rtol=1e-6)
  if name == 'alps':    # the frame's map and reconstruction are its top patch's
    np.testing.assert_allclose(out['pixel'], np.asarray(each['pixel']).reshape(
        3, 5, 16, 16)[np.arange(3), top], rtol=1e-6)


def test_patch_protocol_needs_video():
  cfg = adacl_cfg.get_config('quick')
  cfg.data.patches.size = 8
  with pytest.raises(UserError, match='needs a video dataset'):
    train_and_evaluate(cfg, '/tmp/never_written')
