"""The guest's stdout, block-buffered as CPython's is when it is not a
terminal (componentize-py's is unbuffered: every print crossed into the
host twice), and flushed FLUSH_DELAY after the first write it holds, so a
printed line still reaches weft's log promptly."""

import io
import sys
import time

# How long a printed line may be held, and how much is held at most.
FLUSH_DELAY = 0.05
BUFFER_SIZE = 8192

# When the oldest write held was made, while one is held.
_held_since = None
# Whether a reactor timer flushes (a datagram service's world has no
# timers: the end of a call that comes FLUSH_DELAY later does).
_timed = True


class _Held(io.TextIOWrapper):
    """stdout: a write is held, and its flush is timed."""

    def write(self, text):
        global _held_since
        if _held_since is None:
            _held_since = time.monotonic()
            if _timed:
                from weft import _reactor

                _reactor.reactor().callLater(FLUSH_DELAY, flush)
        return super().write(text)


def flush():
    global _held_since
    _held_since = None
    sys.stdout.flush()


def flush_if_due():
    """At the end of a call, where no timer flushes: flush what has been
    held for FLUSH_DELAY."""
    if _held_since is not None and time.monotonic() - _held_since >= FLUSH_DELAY:
        flush()


def hold(timed):
    """From now on, hold stdout's writes, flushed by a reactor timer if
    `timed`; called as the component begins to serve, so that what the
    program prints at build time is not held."""
    global _timed
    _timed = timed
    if sys.platform == "wasi" and not isinstance(sys.stdout, _Held):
        sys.stdout.flush()
        raw = io.FileIO(1, "w", closefd=False)
        sys.stdout = _Held(io.BufferedWriter(raw, BUFFER_SIZE), encoding="utf-8", errors="backslashreplace")
