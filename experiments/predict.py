"""Scores images, folders of images, video files or folders of frames with a trained run.

  python -m experiments.predict --workdir=RUN --input=PATH [--threshold=gmean|0.4]
      [--output=scores.jsonl] [--overlays=DIR] [--category=C --seed=S]

One JSON line per scored frame (input, frame, score, normalized, anomalous, threshold) to
--output (default: stdout). --overlays writes heat-map overlays: a PNG per image, an
annotated MP4 per video. Inputs of another size or channel count are converted as the
training data was (vadjax/serving/inputs.py).
"""

import sys

from absl import app, flags

from experiments.cli import define_run_flags, run_or_fail, start
from vadjax.serving.files import predict
from vadjax.serving.predict import Predictor

_RESTORE = define_run_flags()
_INPUT = flags.DEFINE_string('input', None, 'An image, a folder of images, a video file or '
                             'a folder of frames.', required=True)
_THRESHOLD = flags.DEFINE_string('threshold', 'gmean', 'A threshold the run persisted (mean, '
                                 'buffered, gmean, f1max, quantile) or a number in the '
                                 'normalised score space.')
_OUTPUT = flags.DEFINE_string('output', '-', 'JSON-lines file; - for stdout.')
_OVERLAYS = flags.DEFINE_string('overlays', '', 'Folder for heat-map overlays (none if empty).')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar on stderr.')


def _predict() -> dict:
  predictor = Predictor(_RESTORE(), _THRESHOLD.value)
  if _OUTPUT.value == '-':
    return predict(predictor, _INPUT.value, sys.stdout, _OVERLAYS.value, _PROGRESS.value)
  with open(_OUTPUT.value, 'w') as out:
    return predict(predictor, _INPUT.value, out, _OVERLAYS.value, _PROGRESS.value)


def main(argv):
  start(argv)
  counts = run_or_fail(_predict)
  print(f'{counts["frames"]} frames of {counts["inputs"]} inputs scored, '
        f'{counts["anomalous"]} anomalous', file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
