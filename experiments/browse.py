"""The runs page alone: every workdir under a folder, with its config, metrics and figures,
sortable and side by side (vadjax/serving/runs.py), served on loopback: the scoring
server of `experiments/serve.py` with no run to score (its flags apply).

  python -m experiments.browse --root=runs [--host=127.0.0.1 --port=8080]
  open http://127.0.0.1:8080/browse
"""

from absl import app, flags

from experiments import serve as serve_lib
from experiments.cli import fail, start


def main(argv):
  start(argv)
  if not flags.FLAGS.root:
    fail('give --root, a folder of workdirs')
  serve_lib.serve(serve_lib.build_app)


if __name__ == '__main__':
  app.run(main)
