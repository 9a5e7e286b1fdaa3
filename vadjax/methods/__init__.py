"""Methods: how a model is trained (loss) and how it scores a sample (score).

`METHODS.get(name)(config)` builds a method object with
  loss_fn(outputs, batch) -> (scalar loss, dict of scalar metrics)
  score_fn(outputs, batch) -> {'score': (B,), optionally 'pixel': (B, H, W)}
where `outputs` is the model's output dict. A batch may carry `weight` (B,), 0 for padding
rows; the loss then averages over the weighted samples. Models do not know how they are
trained.
"""

from vadjax.registry import Registry

METHODS = Registry('method')

from vadjax.methods import memae, reconstruction, ssim  # noqa: E402,F401
