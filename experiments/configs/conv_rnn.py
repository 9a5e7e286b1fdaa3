"""Seed 001's convolutional recurrent AEs (§3.7, §4.9) on video: by default the CGRU AE
with (L_R, DUT) = (2, N) on the embedded `walkway` scene, grayscale, 8-frame
128×128 clips, training strides {1, 2, 4, 8, 16}, test stride 1, batch 32 (the seed's code
for recurrent models), Adam 1e-3 with plateau decay and early stopping (§4.4.1).

Pick an architecture with `model=`: crnn_ae, clstm_ae, cgru_ae, bicrnn_ae, biclstm_ae,
bicgru_ae, seq2seq_crnn, seq2seq_clstm, seq2seq_cgru (or conv_rnn_ae with
model_kwargs.cell / variant), and `model_kwargs.recurrent_layers=1|2|3`,
`model_kwargs.recurrent_decoder=false` for DUT = Y. Presets: `bcae1` (the per-frame BCAE1
baseline: 1-frame clips), `color` (the colour walkway), `cpu` (what a 2-core CPU trains in
minutes: 64×64 frames, a quarter of the filters, strides 1, 2, 4), `quick`.

Launch:
  python -m experiments.main --config=experiments/configs/conv_rnn.py --workdir=runs/cgru
  python -m experiments.main --config=experiments/configs/conv_rnn.py:model=seq2seq_cgru,cpu \
      --workdir=runs/seq2seq_cgru
  python -m experiments.main --config=experiments/configs/conv_rnn.py:bcae1,cpu --workdir=runs/bcae1_video
The full size (128×128, filters 64…96) runs ~2.5 s per step of 8 clips on a 2-core CPU
(BUILD_NOTES.md): use a GPU, or `cpu`.
"""

import ml_collections

from experiments.configs import base
from experiments.configs.base import apply_variant, base_config


def quick(c):
  base.quick(c)
  c.image_size, c.batch_size, c.eval_batch_size = 32, 4, 16
  if c.model != 'per_frame':
    c.model_kwargs.filters = (4, 4, 4, 6, 6)
  c.data.video.update(clip_strides=(1, 4), length=40, num_train=2, num_val=2, num_test=4)


def cpu(c):
  """64×64 frames, a quarter of the filters, strides 1, 2, 4, batch 16."""
  c.image_size, c.batch_size, c.eval_batch_size = 64, 16, 32
  if c.model != 'per_frame':
    c.model_kwargs.filters = (16, 16, 16, 24, 24)
  c.data.video.clip_strides = (1, 2, 4)
  c.num_epochs = 6


def bcae1(c):
  """The per-frame baseline: BCAE1 on every frame (clips of one frame)."""
  c.model = 'per_frame'
  c.model_kwargs = ml_collections.ConfigDict(dict(image_model='bcae1'))
  c.data.video.clip_length = 1
  c.batch_size *= 8            # as many frames per step as the clip models see


PRESETS = {'bcae1': bcae1, 'cpu': cpu, 'color': lambda c: setattr(c, 'categories', 'color')}


def get_config(arg=None):
  c = base_config()
  c.model, c.dataset, c.categories, c.image_size = 'cgru_ae', 'walkway', 'gray', 128
  c.model_kwargs = ml_collections.ConfigDict(dict(
      recurrent_layers=2, recurrent_decoder=True, filters=(64, 64, 64, 96, 96),
      seed_frames=4, peepholes=True, scan_impl='auto', unroll=1, remat=False))
  c.data.video.clip_length = 8
  c.batch_size, c.eval_batch_size = 32, 32
  c.num_epochs = 300
  return apply_variant(c, arg, quick, PRESETS)
