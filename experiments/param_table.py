"""Seed 001 Tab. 4.12 (trainable parameters of the conv recurrent AEs, colour 128×128
inputs) beside ours, in its layout.

  python -m experiments.param_table [--peepholes] [--markdown=docs/param_table.md]

The seed's counts are those of its code's cells: ConvLSTM without peepholes (pass
--peepholes for eq. 3.16's, which add 3·h·w·F per LSTM layer). Counts from shapes only
(no weights are built); runs in seconds.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from vadjax.models import MODELS
from vadjax.models.conv_rnn_ae import NAMES

_PEEPHOLES = flags.DEFINE_bool('peepholes', False, 'ConvLSTM with peepholes (eq. 3.16).')
_MARKDOWN = flags.DEFINE_string('markdown', None, 'Also write the table to this file.')

# seed 001 Tab. 4.12, M parameters: DUT = Y (2D transposed-conv upsampling), L_R = 1, 2, 3;
# then DUT = N (recurrent upsampling), L_R = 1, 2, 3
TAB_4_12 = {
    'crnn_ae': (0.60, 0.76, 0.84, 0.76, 1.00, 1.15),
    'clstm_ae': (1.01, 1.51, 1.77, 1.59, 2.40, 2.92),
    'cgru_ae': (0.85, 1.20, 1.39, 1.34, 1.96, 2.36),
    'bicrnn_ae': (0.85, 1.23, 1.42, 1.26, 1.85, 2.22),
    'biclstm_ae': (1.67, 2.72, 3.28, 2.92, 4.65, 5.76),
    'bicgru_ae': (1.34, 2.12, 2.52, 2.42, 3.77, 4.65),
    'seq2seq_crnn': (0.74, 0.91, 0.98, 0.91, 1.15, 1.29),
    'seq2seq_clstm': (1.16, 1.65, 1.91, 1.74, 2.55, 3.06),
    'seq2seq_cgru': (0.99, 1.35, 1.53, 1.49, 2.11, 2.51)}
LABELS = {'crnn_ae': 'CRNN AE', 'clstm_ae': 'CLSTM AE', 'cgru_ae': 'CGRU AE',
          'bicrnn_ae': 'BiCRNN AE', 'biclstm_ae': 'BiCLSTM AE', 'bicgru_ae': 'BiCGRU AE',
          'seq2seq_crnn': 'Seq2Seq CRNN NN', 'seq2seq_clstm': 'Seq2Seq CLSTM NN',
          'seq2seq_cgru': 'Seq2Seq CGRU NN'}


def param_count(name, layers, recurrent_decoder, peepholes=False, channels=3, size=128,
                frames=8) -> int:
  model = MODELS.get(name)(channels=channels, recurrent_layers=layers,
                           recurrent_decoder=recurrent_decoder, peepholes=peepholes)
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, frames, size, size, channels)))
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes['params']))


def table(peepholes=False) -> str:
  lines = ['| Model | Y, L_R=1 | Y, L_R=2 | Y, L_R=3 | N, L_R=1 | N, L_R=2 | N, L_R=3 |',
           '|---|---|---|---|---|---|---|']
  for name in NAMES:
    cells = []
    for i, seed in enumerate(TAB_4_12[name]):
      ours = param_count(name, i % 3 + 1, i >= 3, peepholes) / 1e6
      cells.append(f'{ours:.2f} M ({seed:.2f})')
    lines.append(f'| {LABELS[name]} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv):
  del argv
  text = ('Trainable parameters, colour 128×128 clips: ours (seed 001 Tab. 4.12). '
          'DUT = Y: 2D transposed-conv decoder; N: recurrent decoder.\n\n'
          + table(_PEEPHOLES.value))
  print(text)
  if _MARKDOWN.value:
    with open(_MARKDOWN.value, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  app.run(main)
