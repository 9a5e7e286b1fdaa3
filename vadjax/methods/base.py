"""The method protocol: the whole contract between a method and the code that trains and
evaluates with it, in one place (ARCHITECTURE.md, Contracts: a method owns the loss and the
score; models do not know how they are trained).

Every method subclasses `Method` and defines `loss_fn` and `score_fn`. The hooks below have
no-op defaults; a method overrides the ones it needs.
"""

import abc

from vadjax.registry import UserError


def settings(config, group: str, defaults: dict) -> dict:
  """A method's settings: `config.<group>` over `defaults`; unknown keys are errors."""
  given = dict(config.get(group, {})) if config is not None else {}
  unknown = set(given) - set(defaults)
  if unknown:
    raise UserError(f'unknown {group} settings {sorted(unknown)}; known: {sorted(defaults)}')
  return {**defaults, **given}


class Stage(abc.ABC):
  """A training stage that runs after the main training, on its result (SVDD fine-tuning
  of the encoder, seed 001 §3.6)."""
  name: str

  @abc.abstractmethod
  def run(self, model, variables: dict, train_source, *, batch_size: int, seed: int,
          mesh) -> tuple[dict, dict]:
    """Returns (new variables, a JSON-able record of what it did)."""


class Method(abc.ABC):
  """How a model is trained and how it scores a sample.

  `outputs` is the model's output dict; a batch may carry `weight` (B,), 0 for padding rows,
  and the loss then averages over the weighted samples.
  """
  # 'loss': early stopping and ReduceLROnPlateau watch the validation loss; 'auroc': they
  # watch the AUROC of `validation_set(...)` (ADACL, seed 002 §4.4)
  validation = 'loss'
  group = ''       # the config group of the method's settings, with these defaults
  DEFAULTS: dict = {}
  # settings of `group` that change how a trained model scores, not its training: a
  # trained workdir may be re-scored with others (vadjax.train.rescore)
  SCORE_ONLY: tuple[str, ...] = ()

  def __init__(self, config=None):
    del config

  @property
  def groups(self) -> tuple[str, ...]:
    """Every config group the method reads (its own, its stages')."""
    return (self.group,) if self.group else ()

  @abc.abstractmethod
  def loss_fn(self, outputs: dict, batch: dict):
    """-> (scalar loss, dict of scalar metrics)."""

  @abc.abstractmethod
  def score_fn(self, outputs: dict, batch: dict) -> dict:
    """-> {'score': (B,), optionally 'pixel': (B, H, W) and other scores 'score/<name>'}."""

  def prepare(self, splits, dataset: str, category: str, cache_dir: str | None):
    """The data the model reads, made from the dataset's splits (seed 004: frozen backbone
    features of every frame); `cache_dir` keeps what is costly to remake (None: no cache)."""
    del dataset, category, cache_dir
    return splits

  def augment(self, batch: dict, rng) -> dict:
    """Makes the training batch on device (ADACL: created anomalies)."""
    del rng
    return batch

  def adjust_grads(self, grads):
    """Changes the gradients before the optimizer (ALPS: the distorter ascends)."""
    return grads

  def optimizer(self, settings, make):
    """The optax transformation from the config's `optimizer` group; `make(settings)` is the
    default Adam. The train step passes `epoch=` to its update (ALPS gates its distorter
    on it)."""
    return make(settings)

  def validation_set(self, val_normals, seed: int):
    """With validation = 'auroc': a labelled set built from the normal validation data."""
    del val_normals, seed
    return None

  def stages(self) -> tuple[Stage, ...]:
    """Stages run after training, in order, before calibration."""
    return ()

  def figures(self, run_dir: str, images, score) -> dict:
    """The method's own report figures {name: path}; `score(images)` scores new images."""
    del run_dir, images, score
    return {}
