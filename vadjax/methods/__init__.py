"""Methods: how a model is trained (loss) and how it scores a sample (score).

`METHODS.get(name)(config)` builds a method object with
  loss_fn(outputs, batch) -> (scalar loss, dict of scalar metrics)
  score_fn(outputs, batch) -> {'score': (B,), optionally 'pixel': (B, H, W)}
where `outputs` is the model's output dict. A batch may carry `weight` (B,), 0 for padding
rows; the loss then averages over the weighted samples. Models do not know how they are
trained.

Optional hooks, for methods that need more than one loss on the model's outputs:
  augment(batch, rng) -> batch     makes the training batch on device (ADACL's anomalies)
  adjust_grads(grads) -> grads     before the optimizer (ALPS: the distorter ascends)
  optimizer(config, make) -> tx    its own optax transformation (ALPS: two players); the
                                   train step passes `epoch=` to its update
  validation = 'auroc' and validation_set(val_normals, seed): early stopping on the AUROC
                                   of a labelled validation set instead of the val loss
  figures(run_dir, images, score) -> {name: path}   extra report figures
"""

from vadjax.registry import Registry

METHODS = Registry('method')


def settings(config, group: str, defaults: dict) -> dict:
  """A method's settings: `config.<group>` over `defaults`; unknown keys are errors."""
  given = dict(config.get(group, {})) if config is not None else {}
  unknown = set(given) - set(defaults)
  if unknown:
    raise ValueError(f'unknown {group} settings {sorted(unknown)}; known: {sorted(defaults)}')
  return {**defaults, **given}

from vadjax.methods import adacl, alps, memae, reconstruction, ssim  # noqa: E402,F401
