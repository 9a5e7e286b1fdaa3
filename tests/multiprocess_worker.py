"""One process of the 2-process loopback training test (run by test_multihost.py)."""

import sys

from experiments.configs import reconstruction
from vadjax.train import train_and_evaluate


def main(workdir, port, process_id):
  c = reconstruction.get_config('quick')
  c.model_kwargs.filters = (8, 8, 8, 16, 16)
  c.update(dict(distributed=True, coordinator_address=f'127.0.0.1:{port}', num_processes=2,
                process_id=int(process_id), log_every_steps=2, checkpoint_every_epochs=1,
                num_epochs=1))
  train_and_evaluate(c, workdir)


if __name__ == '__main__':
  main(*sys.argv[1:])
