"""Every config × every kind of dataset builds its model on the shape that dataset yields
(shapes only, no data), image models run per frame on videos, and `quick` is quick in any
word order."""

import importlib
import os

import jax
import pytest

from experiments.configs import base
from vadjax.data import real
from vadjax.models import BACKBONES
from vadjax.train.experiment import Experiment

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'experiments', 'configs')
CONFIGS = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                 if f.endswith('.py') and f not in ('__init__.py', 'base.py', 'zoo.py',
                                                    'maml.py',    # a meta-learning protocol
                                                    'dino.py'))   # pretraining (test_features)
VIDEO_ONLY = {'conv_rnn', 'feature_prediction'}
# one dataset of each kind: grey / colour images (small, large), grey / colour video, folders
IMAGE_KINDS = ('digits', 'mnist', 'cifar10', 'mvtec', 'folder')
VIDEO_KINDS = ('walkway', 'ucsd_ped2', 'avenue', 'shanghaitech', 'folder_video')


def _shape(c):
  """The record shape the config's dataset yields (real.py, patches.py, video.py)."""
  grey = c.dataset in real.GREY_BY_DEFAULT or c.dataset in ('digits', 'walkway', 'folder',
                                                             'folder_video', 'moving_digits')
  channels = c.data.channels or (1 if grey else 3)
  if c.method == 'feature_prediction':      # clips of 1×1 feature maps (methods/feature_cache.py)
    backbone = BACKBONES.get(c.features.backbone)()
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), 'float32')
    d = jax.eval_shape(lambda x: backbone.init_with_output(jax.random.key(0), x)[0], x)
    return (c.data.video.clip_length, 1, 1, d['latent'].shape[-1])
  if c.data.patches.size:
    return (c.data.patches.size, c.data.patches.size, channels)
  if c.dataset in base.VIDEO_DATASETS:
    return (c.data.video.clip_length, c.image_size, c.image_size, channels)
  return (c.image_size, c.image_size, channels)


@pytest.mark.parametrize('name', CONFIGS)
def test_every_config_builds_on_every_dataset_kind(name):
  module = importlib.import_module(f'experiments.configs.{name}')
  kinds = VIDEO_KINDS if name in VIDEO_ONLY else IMAGE_KINDS + VIDEO_KINDS
  for dataset in kinds:
    c = module.get_config(f'dataset={dataset}')
    c.num_devices = 1
    if dataset in base.VIDEO_DATASETS:     # how each kind of config meets video
      how = {'conv_rnn': c.data.video.clip_length > 1, 'memae': c.model == 'memae_3d',
             'feature_prediction': c.data.video.clip_length > 1,
             'alps': c.data.patches.size > 0, 'adacl': c.data.patches.size > 0}
      assert how.get(name, c.model == 'per_frame' and c.data.video.clip_length == 1), dataset
    jax.eval_shape(Experiment(c).steps(_shape(c)).init, jax.random.PRNGKey(0))


@pytest.mark.parametrize('name', CONFIGS)
def test_quick_is_quick_in_any_order(name):
  module = importlib.import_module(f'experiments.configs.{name}')
  dataset = 'ucsd_ped2' if name in VIDEO_ONLY or name == 'memae' else 'mnist'
  a = module.get_config(f'quick,dataset={dataset}')
  b = module.get_config(f'dataset={dataset},quick')
  assert a.to_dict() == b.to_dict()
  assert a.num_epochs <= 2 and a.seeds == (0,)
  assert a.image_size <= (128 if name in ('bcae2', 'ks_cae') else 64)   # their layout
  assert module.get_config('quick,num_epochs=5').num_epochs == 5     # explicit keys win


def test_every_sweep_row_makes_a_valid_config():
  """Every study's rows (experiments/sweep.py) make configs the experiment accepts: a typo in
  a row's variant fails here, not an hour into a sweep."""
  from experiments import sweep
  for name, study in sweep.STUDIES.items():
    for row in study.rows:
      words = ','.join(filter(None, [row.variant.format(dino='/x.npz'), study.preset]))
      c = row.make(words)
      Experiment(c)
      if row.data in ('digits', 'textures', 'walkway'):
        assert c.dataset == row.data, (name, row.label, c.dataset)


@pytest.mark.parametrize('kwargs, message', [
    ({'override': 'num_epoch=2'}, "unknown config key 'num_epoch'"),
    ({'override': 'num_epochs=two'}, 'config key num_epochs'),
    ({'only': ['NoSuchRow']}, 'no row of study'),
])
def test_a_bad_sweep_fails_before_its_first_row(kwargs, message, tmp_path):
  from experiments import sweep
  from vadjax.registry import UserError
  with pytest.raises(UserError, match=message):
    sweep.run('seed004', str(tmp_path / 'w'), ['0'], **kwargs)   # its DINO would run first
  assert not (tmp_path / 'w').exists()
