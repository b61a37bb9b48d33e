"""Writing files and folders so that a crash never leaves half of one, and tidying after one.

Temporary names sit beside their target (a rename is atomic only within one file system) and
carry the writing process's id: ``.<name>.<pid>-<random>.tmp`` (and ``.old`` for a folder being
replaced without an atomic exchange). A later write to the same path removes those whose process
is gone, so a killed save leaves nothing behind for long. The id is only meaningful on one
machine: two machines writing one path on a shared file system may remove each other's
temporaries.
"""

import ctypes
import errno
import os
import re
import shutil
import sys
import uuid
from contextlib import contextmanager


def temp_name(path, suffix=".tmp"):
    """A fresh ``.<name>.<pid>-<random><suffix>`` beside ``path``."""
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    return os.path.join(folder, f".{base}.{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}")


@contextmanager
def atomic_write(path, mode="wb", **open_kwargs):
    """Open a temporary file beside ``path`` for writing; when the block ends without error,
    flush it, fsync it and rename it over ``path``; on any error remove it, so ``path`` keeps
    whatever it held before.

    The file is created with ``open(..., "x")`` rather than ``tempfile.mkstemp`` so that it gets
    the usual umask permissions instead of mkstemp's private 0600.
    """
    tmp = temp_name(path)
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


def _process_gone(pid):
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _leftovers(path, suffix):
    """``(pid, full name)`` of this path's temporaries ending in ``suffix``."""
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    pattern = re.compile(re.escape(f".{base}.") + r"(\d+)-[0-9a-f]{12}" + re.escape(suffix) + "$")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        match = pattern.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return found


def _remove(name):
    if os.path.isdir(name) and not os.path.islink(name):
        shutil.rmtree(name, ignore_errors=True)
    else:
        try:
            os.unlink(name)
        except OSError:
            pass


def recover_folder(path):
    """If ``path`` is missing because a replacement died between its two renames, put the old
    folder back. Returns True when it did."""
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        return False
    orphans = [name for pid, name in _leftovers(path, ".old") if _process_gone(pid)]
    for name in sorted(orphans, key=os.path.getmtime, reverse=True):
        try:
            os.rename(name, path)
            return True
        except OSError:
            continue
    return False


def remove_leftovers(path):
    """Remove temporaries of ``path`` left by writers that no longer run (a killed save), after
    restoring a folder a killed replacement had moved aside."""
    recover_folder(path)
    for suffix in (".tmp", ".old"):
        for pid, name in _leftovers(path, suffix):
            if _process_gone(pid):
                _remove(name)


def fsync_folder(path):
    """Make a rename or creation inside ``path`` durable (a no-op where folders cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _find_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


# None where the C library has no renameat2 (not Linux, or a glibc older than 2.28).
_renameat2 = _find_renameat2()


def exchange(a, b):
    """Swap the names ``a`` and ``b`` in one atomic step (Linux's ``RENAME_EXCHANGE``). Returns
    False where the OS or the file system has no such call, so the caller can fall back."""
    if _renameat2 is None:
        return False
    result = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def replace_folder(new, path):
    """Put the complete folder ``new`` at ``path``, whose old folder is removed.

    With ``RENAME_EXCHANGE`` there is no moment without a folder at ``path``. Without it, the old
    folder is first renamed to ``.<name>.<pid>-<random>.old``: if the process dies before the
    second rename, :func:`recover_folder` (called by the next load or save) puts it back.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        os.rename(new, path)
        return
    if exchange(new, path):
        shutil.rmtree(new, ignore_errors=True)  # it holds the old folder now
        return
    old = temp_name(path, ".old")
    os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
