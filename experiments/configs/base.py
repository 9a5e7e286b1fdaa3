"""Defaults shared by every config, and the `key=value,...` variant parser.

Training defaults follow seed 001 §4.4.1 (Adam lr 1e-3, weight decay 1e-5 from its code,
ReduceLROnPlateau factor 0.75 / patience 4, early stopping patience 8, MSE).
"""

import ml_collections

from vadjax.methods import GROUP_DEFAULTS


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = 'bcae1'
  c.model_kwargs = ml_collections.ConfigDict()
  c.method = 'reconstruction'
  c.dataset = 'digits'
  c.categories = 'all'          # 'all' or a list (',' or ';'): normal classes / textures
  c.seeds = (0,)
  c.image_size = 32
  c.data = ml_collections.ConfigDict(dict(
      val_fraction=0.1, test_fraction=0.3,      # held-out shares (digits, folder, real data)
      folder_root='', channels=0,               # dataset=folder / folder_video
      # real datasets (vadjax/data/real.py, docs/real_datasets.md): raw files, prepared
      # TFDS data (default ~/tensorflow_datasets), crop ('' | 'code' | 'top left h w'),
      # Subway's ±frames around an event, 'files' or 'tfds' (prepared catalog data)
      manual_dir='', tfds_dir='', crop='', label_window=15, source='files',
      workers=0,                  # Grain worker processes that read training batches
      textures=dict(crop_size=64, num_train=256, num_val=48, num_test=128),   # its crops
      # clips of every video dataset; the embedded videos' length and counts, and
      # walkway's normal walking speeds in px/frame (min, max)
      video=dict(clip_length=16, clip_strides=(1, 2, 4, 8, 16), length=160, num_train=6,
                 num_val=4, num_test=8, walk_speed=(1.0, 1.6)),
      # patch protocol for video frames (METHODS.md §0): size 0 = off; training takes the
      # patches of normal frames whose mean absolute change from the previous frame is at
      # least min_change (0 = all); a test frame's score is the max over its patches
      patches=dict(size=0, stride=30, test_stride=30, min_change=0.0)))
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_epochs = 100
  c.num_train_steps = 0          # > 0: train this many steps instead (hours of footage)
  c.optimizer = ml_collections.ConfigDict(dict(   # Adam (vadjax/train/steps.py)
      learning_rate=1e-3,
      lr_schedule='constant',    # or 'cyclic': triangular, learning_rate ↔ max_learning_rate
      max_learning_rate=1e-2,    # (cyclic) the peak
      lr_cycle_steps=20,         # (cyclic) steps from base to peak
      weight_decay=1e-5,
      # ReduceLROnPlateau on the validation loss, down to min_learning_rate
      plateau_factor=0.75, plateau_patience=4, min_learning_rate=1e-6))
  c.early_stopping_patience = 8  # 0 disables
  c.conv_impl = 'auto'           # stride-2 convs: 's2d' fast form on CPU, 'xla' elsewhere
  c.dtype = 'float32'            # compute dtype; params stay float32 ('bfloat16' for mixed)
  c.num_devices = 0              # 0 = all devices on the data axis
  c.distributed = False          # jax.distributed.initialize() for multi-host runs;
  c.coordinator_address = ''     # host:port, num_processes and process_id: leave unset to
  c.num_processes = 0            # auto-detect (TPU pods, Slurm)
  c.process_id = -1
  c.log_every_steps = 50
  c.checkpoint_every_epochs = 5
  c.contamination = 0.05         # for the quantile threshold
  c.positive = 'anomaly'         # class that precision / recall / F1 are about
  # each method's settings in its own group (`reconstruction.score_window=8`,
  # `memae.entropy_weight=1e-4`, `ssim.weight=0.3`, `alps.*`, `adacl.*`) and the SVDD
  # stage's (`svdd.epochs=10`); their defaults and meaning: vadjax/methods/<group>.py.
  # Setting a group the config's method does not read is an error.
  for group, defaults in GROUP_DEFAULTS.items():
    c[group] = ml_collections.ConfigDict(dict(defaults))
  c.plots = True
  c.num_plot_samples = 8
  return c


def quick(c):
  """The shared part of every config's `quick` preset (seconds-long runs for tests): two
  epochs, one seed, no figures, one category and small splits of the embedded image data.
  Configs extend it with their own (smaller models, shorter videos)."""
  c.num_epochs, c.seeds, c.plots = 2, (0,), False
  c.categories = {'digits': '1', 'textures': 'brick'}.get(c.dataset, c.categories)
  c.data.textures.update(num_train=64, num_val=16, num_test=32)
  c.data.video.update(length=24, num_train=1, num_val=1, num_test=2)


def _coerce(old, text: str):
  if isinstance(old, bool):
    if text.lower() not in ('true', 'false', '1', '0'):
      raise ValueError(f'expected true/false, got {text!r}')
    return text.lower() in ('true', '1')
  if isinstance(old, tuple):   # elements typed as the default's (int when it is empty)
    kind = type(old[0]) if old else int
    return tuple(kind(x) for x in text.replace(';', ' ').split())
  return type(old)(text)


VIDEO_DATASETS = ('walkway', 'moving_digits', 'ucsd_ped1', 'ucsd_ped2', 'avenue', 'subway',
                  'shanghaitech', 'folder_video')
REAL_VIDEO_DATASETS = VIDEO_DATASETS[2:]


def on_dataset(c):
  """On a video dataset a 2D model scores every frame (seed 001 §4.9: 2D CAEs on 128×128
  frames); seed 001's image datasets are 128×128 too."""
  if c.dataset in VIDEO_DATASETS and c.model != 'per_frame':
    c.model_kwargs = ml_collections.ConfigDict(dict(image_model=c.model))
    c.model = 'per_frame'
    c.data.video.clip_length = 1
  if c.dataset in VIDEO_DATASETS or c.dataset in ('mvtec', 'ham10000', 'ddds'):
    c.image_size = max(c.image_size, 128)    # the seed 001 code's image_size


def patch_presets(patches):
  """The `walkway` preset and the `on_dataset` hook of a config whose `patches(c)` sets up
  the patch protocol: on the embedded walkway, and on every video dataset."""
  def walkway(c):
    patches(c)
    c.dataset, c.categories = 'walkway', 'gray'

  def on_dataset(c):
    if c.dataset in VIDEO_DATASETS:
      patches(c)
  return walkway, on_dataset


def apply_variant(config: ml_collections.ConfigDict, arg: str | None,
                  quick=None, presets=None, on_dataset=None) -> ml_collections.ConfigDict:
  """Applies `key=value,key=value` and bare preset words (`quick`, ...) to a config.

  Keys may be dotted (`model_kwargs.memory_items=50`). Lists use spaces or ';'
  (`seeds=0;1;2`). Presets are functions of the config, applied in the order given, except
  `quick`, which comes after everything else but the explicit keys.
  Unknown keys or words are errors listing the known ones. `dataset=NAME` also resets
  `categories` to all of the dataset's and calls `on_dataset(config)`, the config file's
  way to adapt to it (a video dataset for an image model, ...); keys after it still win.
  """
  presets = {**(presets or {}), **({'quick': quick} if quick is not None else {})}
  items = [x.strip() for x in (arg or '').split(',') if x.strip()]
  for item in items:
    if item != 'quick' or quick is None:
      _apply_item(config, item, arg, presets, on_dataset)
  if quick is not None and 'quick' in items:
    # quick last, whatever the order (a dataset's hook must not undo it); then the keys
    # the user gave explicitly win over it
    quick(config)
    for item in items:
      if '=' in item and item.partition('=')[0].strip() != 'dataset':
        _apply_item(config, item, arg, {}, None)
  return config


def _apply_item(config, item: str, arg: str, presets: dict, on_dataset) -> None:
  key, eq, value = item.partition('=')
  key = key.strip()
  if not eq:
    if key in presets:
      presets[key](config)
      return
    words = ', '.join(sorted(presets)) or 'none'
    raise ValueError(f'config variant {item!r} is not key=value or a preset ({words})')
  *path, leaf = key.split('.')
  node = config
  for part in path:
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise ValueError(f'unknown config group {part!r} in variant {arg!r}')
    node = node[part]
  if leaf not in node:
    raise ValueError(f'unknown config key {key!r} in variant {arg!r}; known: '
                     f'{", ".join(sorted(node.keys()))}')
  try:
    node[leaf] = _coerce(node[leaf], value.strip())
  except ValueError as e:
    raise ValueError(f'config key {key}: {e}') from None
  if key == 'dataset':          # a new dataset runs all of its categories unless told
    config.categories = 'all'
    if on_dataset is not None:
      on_dataset(config)
