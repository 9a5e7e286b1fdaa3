"""Exports a trained run to StableHLO or ONNX, with its normaliser and thresholds beside it.

  python -m experiments.export --workdir=RUN --format=stablehlo|onnx --out=DIR
      [--category=C --seed=S] [--platforms=cpu,cuda,tpu]

Score with the export on a machine without vadjax: `python DIR/exported.py DIR x.npy`, or
`from exported import load` (vadjax/serving/exported.py). ONNX needs the onnx extra:
pip install -r requirements-onnx.txt.
"""

from absl import app, flags

from experiments.cli import define_run_flags, run_or_fail, start
from vadjax.serving import export as export_lib

_RESTORE = define_run_flags()
_FORMAT = flags.DEFINE_enum('format', 'stablehlo', export_lib.FORMATS, 'Export format.')
_OUT = flags.DEFINE_string('out', None, 'Output folder (an earlier export there is '
                           'replaced).', required=True)
_PLATFORMS = flags.DEFINE_list('platforms', list(export_lib.PLATFORMS),
                               'StableHLO: the platforms the graph is lowered for.')


def _export() -> dict:
  run = _RESTORE()
  return export_lib.export(run, _FORMAT.value, _OUT.value, _PLATFORMS.value)


def main(argv):
  start(argv)
  meta = run_or_fail(_export)
  print(f'exported {meta["run"]} ({meta["model"]}, {meta["method"]}) as {meta["format"]} to '
        f'{_OUT.value}: inputs (N, {", ".join(map(str, meta["input"]["shape"]))}), outputs '
        f'{", ".join(meta["outputs"])}; max |exported - in-process| score '
        f'{meta["check"]["max_diff"]:.2g}')


if __name__ == '__main__':
  app.run(main)
