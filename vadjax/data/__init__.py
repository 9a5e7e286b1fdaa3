"""Data: random-access sources (embedded arrays; TFDS data sources for the real image
datasets; the frame store, prepared once and read by index, for every video dataset),
protocols that turn a dataset into train/val/test splits, and Grain pipelines.

`DATASETS.get(name)` returns a builder `build(category, config) -> Splits`;
`categories(name)` lists the categories a protocol loops over (normal classes, textures).
"""

from vadjax.data.sources import DATASETS, ArraySource, Splits, categories
from vadjax.data import embedded, folder, moving_digits, real, walkway  # noqa: F401  (registers datasets)
from vadjax.data.pipeline import eval_batches, train_dataset

__all__ = ['DATASETS', 'ArraySource', 'Splits', 'categories', 'eval_batches', 'train_dataset']
