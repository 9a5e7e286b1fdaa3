"""Embedded datasets and the Grain pipeline."""

import ml_collections
import numpy as np
import pytest

from vadjax.data import DATASETS, eval_batches, train_dataset
from vadjax.data.embedded import _digits, _split_indices
from vadjax.registry import UserError

CFG = ml_collections.ConfigDict(dict(val_fraction=0.1, test_fraction=0.3, crop_size=32,
                                     num_train=40, num_val=16, num_test=24))


def test_digits_one_class_protocol():
  s = DATASETS.get('digits')('3', 16, CFG)
  assert s.image_shape == (16, 16, 1)
  assert (s.train.array('label') == 0).all() and (s.train.array('kind') == 0).all()
  test_kinds = s.test.array('kind')
  assert set(np.unique(test_kinds)) == set(range(11)) - {4}    # every other class, kind = c+1
  assert (s.test.array('label') == (test_kinds > 0)).all()
  img = s.train.array('image')
  assert img.dtype == np.float32 and img.min() >= 0 and img.max() <= 1
  # train / val / test are disjoint and cover the data set
  _, targets = _digits(16)
  parts = _split_indices(targets, 0.1, 0.3)
  assert sum(map(len, parts)) == len(targets) == len(np.unique(np.concatenate(parts)))


def test_textures_masks_match_labels():
  s = DATASETS.get('textures')('gravel', 32, CFG)
  masks, labels, kinds = s.test.array('mask'), s.test.array('label'), s.test.array('kind')
  assert masks.shape == (24, 32, 32) and s.has_masks
  assert ((masks.reshape(24, -1).max(1) > 0) == (labels == 1)).all()
  assert set(np.unique(kinds[labels == 1])) == {1, 2, 3, 4}
  again = DATASETS.get('textures')('gravel', 32, CFG)
  np.testing.assert_array_equal(again.test.array('image'), s.test.array('image'))


def test_unknown_category():
  with pytest.raises(UserError, match='categories brick, grass, gravel'):
    DATASETS.get('textures')('marble', 32, CFG)
  with pytest.raises(UserError, match='unknown dataset'):
    DATASETS.get('mnist_typo')


def test_train_pipeline_epochs_and_resume_position():
  s = DATASETS.get('digits')('0', 16, CFG)
  ds = train_dataset(s.train, 8, seed=0, num_epochs=3)
  per_epoch = len(s.train) // 8
  assert len(ds) == 3 * per_epoch
  first = [b['image'] for b in ds][:per_epoch]
  seen = np.concatenate(first).reshape(per_epoch * 8, -1)
  assert len(np.unique(seen, axis=0)) == per_epoch * 8          # no repeats within an epoch
  it = iter(ds.to_iter_dataset())
  for _ in range(4):
    next(it)
  state = it.get_state()
  expected = next(it)['image']
  it2 = iter(ds.to_iter_dataset())
  it2.set_state(state)
  np.testing.assert_array_equal(next(it2)['image'], expected)


def test_eval_batches_pad_and_count():
  s = DATASETS.get('digits')('0', 16, CFG)
  batches = list(eval_batches(s.test, 64))
  assert all(b['image'].shape[0] == 64 for b, _ in batches)
  assert sum(n for _, n in batches) == len(s.test)
