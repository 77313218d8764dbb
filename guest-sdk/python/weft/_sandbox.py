"""What the WASI build of CPython lacks and Twisted reaches for, made to
fit the sandbox before Twisted is imported: the three `os` names
`twisted.python.lockfile` imports, and anonymous temporary files (kept in
memory: `twisted.web` spools request bodies of unknown length to one).
Once the component serves, opening a file fails saying why."""

import builtins
import errno
import io
import os
import sys
import tempfile


def _no_links_or_processes(*args, **kwargs):
    raise OSError(errno.ENOSYS, "weft's sandbox has no processes or links")


def _temporary_file(mode="w+b", buffering=-1, encoding=None, newline=None, *args, **kwargs):
    """tempfile.TemporaryFile, in memory: the sandbox has no files. The
    instance's memory cap bounds it."""
    return io.BytesIO() if "b" in mode else io.StringIO(newline=newline)


def fit():
    # Stubbing more than these three breaks the standard library (with
    # `os.fork` present, `random` registers fork hooks and fails).
    for name in ("kill", "readlink", "symlink"):
        if not hasattr(os, name):
            setattr(os, name, _no_links_or_processes)
    if sys.platform == "wasi":
        tempfile.TemporaryFile = _temporary_file


def serving():
    """The component serves: the sandbox has no files, so say so when a
    file cannot be opened (WASI's own error is `[Errno 44] No such file`)."""
    if builtins.open is not _open_in_sandbox:
        global _open
        _open = builtins.open
        builtins.open = _open_in_sandbox


_open = open


def _open_in_sandbox(file, *args, **kwargs):
    try:
        return _open(file, *args, **kwargs)
    except OSError as error:
        raise PermissionError(
            f"weft's sandbox grants a guest no files: cannot open {file!r} ({error.strerror})"
        ) from None
