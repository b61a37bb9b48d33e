"""``Input(shape)``: the first element of a Sequential that declares the shape of one sample.

It computes nothing and holds no weights, so it is not a layer: the model builds itself for
``shape`` at once (``summary()`` works before ``compile`` or ``fit``) and keeps only the layers
that compute in ``model.layers``, as Keras does. A saved model records the shape as its
``input_shape``; a model declared with ``Input`` saves and loads like one given ``input_dim=``.
"""

import numbers
from .._checks import is_int


def sample_shape(shape, what):
    """``shape`` (an int or a sequence of ints, no batch axis) as a tuple of positive ints."""
    dims = (shape,) if isinstance(shape, numbers.Integral) else shape
    if isinstance(shape, (bool, str, bytes)) or not isinstance(dims, (tuple, list)) or any(
            d is not None and (not is_int(d))
            for d in dims):
        raise TypeError(f"{what} must be an int or a tuple of ints without the batch axis, "
                        f"e.g. (30,) or (28, 28, 1); got {shape!r}")
    if not dims:
        raise ValueError(f"{what} needs at least one dimension, e.g. (30,); got {shape!r}")
    if any(d is None for d in dims):
        raise ValueError(f"{what} excludes the batch axis and every dimension must be known: "
                         f"got {shape!r}; write (30,), not (None, 30)")
    if any(d < 1 for d in dims):
        raise ValueError(f"{what} dimensions must be positive integers, got {shape!r}")
    return tuple(int(d) for d in dims)


class Input:
    """The shape of one sample, without the batch axis: ``Input((30,))`` or ``Input(30)`` for
    30 features, ``Input(shape=(28, 28, 1))`` for one-channel images.

    >>> import neuralnp as nn
    >>> model = nn.Sequential([nn.Input((4,)), nn.Dense(2)])
    >>> model.built, len(model.layers), model.output_shape
    (True, 1, (2,))
    """

    def __init__(self, shape, name=None):
        self.shape = sample_shape(shape, "Input shape")
        self.name = name

    def __repr__(self):
        return f"Input(shape={self.shape})"
