"""Writing files so that a crash never leaves half of one."""

import os
import uuid
from contextlib import contextmanager


@contextmanager
def atomic_write(path, mode="wb", **open_kwargs):
    """Open a temporary file beside ``path`` for writing; when the block ends without error,
    flush it, fsync it and rename it over ``path``; on any error remove it, so ``path`` keeps
    whatever it held before.

    The temporary name is unique and in the same folder (a rename is atomic only within one file
    system), and the file is created with ``open(..., "x")`` rather than ``tempfile.mkstemp`` so
    that it gets the usual umask permissions instead of mkstemp's private 0600.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, mode.replace("w", "x"), **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
