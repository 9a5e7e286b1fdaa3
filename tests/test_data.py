"""Embedded datasets (digits, textures, the walkway video scene) and the Grain pipeline."""

import ml_collections
import numpy as np
import pytest

from vadjax.data import DATASETS, eval_batches, train_dataset, walkway
from vadjax.data.embedded import labelled_digits, _split_indices
from vadjax.registry import UserError

CFG = ml_collections.ConfigDict(dict(
    val_fraction=0.1, test_fraction=0.3,
    textures=dict(crop_size=32, num_train=40, num_val=16, num_test=24)))


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
  _, targets = labelled_digits(16)
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


# ------------------------------------------------------------------------ walkway video

def test_walkway_is_deterministic_labelled_and_colour_or_gray():
  tr, _, te = walkway.make_videos(60, 1, 0, 4, 32, 'color')
  tr2, _, te2 = walkway.make_videos(60, 1, 0, 4, 32, 'color')
  np.testing.assert_array_equal(te[2].frames, te2[2].frames)
  gray = walkway.make_videos(60, 1, 0, 4, 64, 'gray')[2]
  color = walkway.make_videos(60, 1, 0, 4, 64, 'color')[2]
  assert gray[0].frames.shape == (60, 64, 64, 1) and te[0].frames.shape == (60, 32, 32, 3)
  np.testing.assert_allclose(gray[1].frames[..., 0], color[1].frames @ walkway._LUMA, atol=1e-6)
  assert tr[0].labels.sum() == 0
  for i, v in enumerate(gray):                     # one event per video, kinds cycled
    assert set(np.unique(v.kinds)) == {0, 1 + i % 4}
    assert v.labels.sum() > 5
    assert (v.masks.reshape(60, -1).max(1) > 0).tolist() == (v.labels > 0).tolist()
  with pytest.raises(UserError, match='walkway categories'):
    walkway.make_videos(60, 1, 0, 4, 32, 'infrared')


def test_walkway_speed_range():
  """data.video.walk_speed: the default is the scene of every reported run; a wider range is
  another scene with the same labelling rules; speeds a runner has are refused."""
  default = walkway.make_videos(60, 1, 0, 4, 32)
  explicit = walkway.make_videos(60, 1, 0, 4, 32, speed=(1.0, 1.6))
  np.testing.assert_array_equal(default[2][1].frames, explicit[2][1].frames)
  wide = walkway.make_videos(60, 1, 0, 4, 32, speed=(0.6, 2.0))
  assert not np.array_equal(default[0][0].frames, wide[0][0].frames)
  for i, v in enumerate(wide[2]):
    assert set(np.unique(v.kinds)) == {0, 1 + i % 4} and v.labels.sum() > 5
  with pytest.raises(UserError, match='data.video.walk_speed'):
    walkway.make_videos(60, 1, 0, 4, 32, speed=(1.0, 4.5))


def test_motion_events_are_drawn_as_ordinary_people():
  """The wrong-way walker and the loiterer are drawn as the normal walkers are: their
  masks have a person's height (not a cart's); only their motion is anomalous."""
  _, _, te = walkway.make_videos(120, 1, 0, 4, 64, 'gray')
  for v in te[2:]:                                   # wrong_way, loiter
    rows = np.flatnonzero(v.masks.max(axis=(0, 2)))
    assert 10 <= rows.max() - rows.min() + 1 <= 16   # a person's height (+ lane jitter)


def test_walkway_event_takes_a_normal_walkers_place():
  """The event figure enters in the lane and at the frame of the walker it replaces: the
  traffic's (lane, entry) pairs are unchanged, so counting people does not find it."""
  for kind in range(1, len(walkway.KINDS)):
    rng = np.random.default_rng(kind)
    walkers = walkway._traffic(rng, 160, (1.0, 1.6))
    before = sorted((w['lane'], w['t0']) for w in walkers)
    walkway._add_event(rng, walkers, 160, kind, (1.0, 1.6))
    assert sorted((w['lane'], w['t0']) for w in walkers) == before
    events = [w for w in walkers if w['anomalous']]
    assert len(events) == 1 and events[0]['anomalous'][0] == kind
    assert events[0]['t0'] >= 160 // 6
  phases = [w['phase'] for w in walkers]     # the pose at a place differs between walkers
  assert np.std(phases) > 1.0


def test_walkway_figure_outlines_every_event(tmp_path):
  from experiments import walkway_figure
  frames, captions = walkway_figure.event_frames(per_kind=2)
  assert len(frames) == 8 and [c.split(',')[0] for c in captions[::2]] == walkway.KINDS[1:]
  for f in frames:      # the outline's red pixels are there
    assert np.any(np.all(np.isclose(f, (1.0, 0.1, 0.1)), axis=-1))
