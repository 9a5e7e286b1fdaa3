"""The walkway figure of the README: five frames of each event kind, the event's figure
outlined (its mask's edge in red).

  python -m experiments.walkway_figure [--figure_path=docs/walkway_events.png]
"""

import matplotlib
import numpy as np
from absl import app, flags
from scipy import ndimage

from vadjax.data import walkway

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string('figure_path', 'docs/walkway_events.png', 'Where the figure goes.')


def event_frames(per_kind: int = 5):
  """(frames, captions): `per_kind` evenly spaced anomalous frames of the first test video
  of every kind, colour, 128×128, outlined."""
  _, _, test = walkway.make_videos(160, 1, 0, 4, 128, 'color')
  frames, captions = [], []
  for v in test:
    kind = walkway.KINDS[int(v.kinds.max())]
    for t in np.flatnonzero(v.labels)[np.linspace(0, v.labels.sum() - 1, per_kind).astype(int)]:
      mask = v.masks[t] > 0
      frame = v.frames[t].copy()
      frame[ndimage.binary_dilation(mask) & ~mask] = (1.0, 0.1, 0.1)   # a 1-px outline
      frames.append(frame)
      captions.append(f'{kind}, frame {t}')
  return frames, captions


def main(argv):
  del argv
  frames, captions = event_frames()
  fig, axes = plt.subplots(4, 5, figsize=(10, 8.6))
  for ax, frame, caption in zip(axes.ravel(), frames, captions):
    ax.imshow(frame)
    ax.set_title(caption, fontsize=8)
    ax.axis('off')
  fig.suptitle('walkway (color): one event per test video, outlined', fontsize=10)
  fig.tight_layout()
  fig.savefig(_OUT.value, dpi=60)
  print(_OUT.value)


if __name__ == '__main__':
  app.run(main)
