"""PyTorch twins of the vadjax models: one registry, one porting scheme.

A twin has the Flax model's layers under the Flax module names, so `port(twin, variables)`
copies params and batch statistics by path (registry.py). Each twin carries its own torch
loss, `twin.loss(outputs, x, target)`, the objective its model's method trains. Used for
parity tests (same weights, same input → same outputs) and the speed comparison in
`experiments/bench.py`.
"""

from vadjax.bench.twins import (backbones, conv_ae, conv_rnn, frame_predictor, ks_cae,  # noqa: F401
                                 memae, seed002)  # (register)
from vadjax.bench.twins.ks_cae import AsymmetricBlock
from vadjax.bench.twins.conv_rnn import Recurrent
from vadjax.bench.twins.memae import Memory
from vadjax.bench.twins.registry import TWINS, port

__all__ = ['TWINS', 'AsymmetricBlock', 'Memory', 'Recurrent', 'port']
