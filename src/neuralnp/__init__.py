"""neuralnp: neural networks from scratch on NumPy, with backpropagation written out by hand.

>>> import neuralnp as nn
>>> model = nn.Sequential([nn.Dense(16, activation="relu"), nn.Dense(1, activation="sigmoid")])
"""

from ._version import __version__  # noqa: E402,F401

from . import (  # noqa: E402
    callbacks, datasets, initializers, losses, metrics, optimizers, preprocessing, regularizers,
    schedules,
)
from .callbacks import Callback, History  # noqa: E402
from .layers import (  # noqa: E402
    AveragePooling2D, Conv2D, Flatten, GlobalAveragePooling2D, MaxPooling2D, Reshape,
    ELU, GELU, SELU, Activation, ArcTan, BatchNormalization, BinaryStep, Dense, Dropout, Layer,
    Input, LayerNormalization, LeakyReLU, Linear, PReLU,
    ReLU, Sigmoid, SiLU, Softmax, Softplus, Swish, Tanh,
)
from .errors import DeviceError, ModelFileError, TrainingDivergedError  # noqa: E402
from .model import Sequential  # noqa: E402
from .optimizers import SGD, Adagrad, Adam, AdamW, Nadam, RMSprop  # noqa: E402
from .loading import load_model  # noqa: E402
