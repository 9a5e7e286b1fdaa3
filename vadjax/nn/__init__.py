"""Building blocks shared by the models."""

from vadjax.nn.layers import (Conv, Conv3D, ConvTranspose, ConvTranspose3D, batch_norm,
                              check_input, conv_bn)
from vadjax.nn.memory import Memory

__all__ = ['Conv', 'Conv3D', 'ConvTranspose', 'ConvTranspose3D', 'Memory', 'batch_norm',
           'check_input', 'conv_bn']
