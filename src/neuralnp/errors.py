"""The library's own exceptions, in a module that imports nothing else of the library."""


class ModelFileError(ValueError):
    """A model file (folder or .zip) is damaged, hostile, foreign or unreadable.

    The message names the file and what is wrong with it. Every failure while reading a model
    file ends in this one type, whatever the file holds.
    """

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class TrainingDivergedError(FloatingPointError):
    """The loss, or an update, became NaN or infinite; the model keeps the last finite weights
    (raised by the training loop and by the optimizer's step)."""


def refused_update(bad, size):
    """What a refused update did, in the words the optimizer and the training loop both use."""
    return f"the update made {bad} of {size} weights NaN or infinite"


class DeviceError(RuntimeError):
    """The device asked for cannot be used: CuPy, the NVIDIA driver or a GPU is missing. The
    message says which, and what to install."""
