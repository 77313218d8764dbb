"""State kept by the host, not by this instance (`wasi:keyvalue`):
buckets that every worker, instance and version of the service share,
that outlive a trap or a reload, and that the operator may put on Redis to
share them between processes. Each call is done when it returns (the host
waits for its backend), so they return plainly and raise KeyValueError,
rather than return Deferreds."""

from componentize_py_types import Err
from wit_world.imports import atomics as _atomics
from wit_world.imports import batch as _batch
from wit_world.imports import wasi_keyvalue_store as _store


class KeyValueError(Exception):
    """A key-value call failed: the bucket may not be opened, or the
    backend refused or could not answer (a quota, Redis away)."""


def _call(function, *args):
    try:
        return function(*args)
    except Err as error:
        value = error.value
        why = getattr(value, "value", None) or type(value).__name__.removeprefix("Error_")
        raise KeyValueError(why) from None


class Bucket:
    """A named bucket of keys (str) and values (bytes), in the service's
    namespace: `Bucket.open("counter")`."""

    def __init__(self, bucket):
        self._bucket = bucket

    @classmethod
    def open(cls, name):
        return cls(_call(_store.open, name))

    def get(self, key):
        """The value of `key`, or None."""
        return _call(self._bucket.get, key)

    def set(self, key, value):
        _call(self._bucket.set, key, value)

    def delete(self, key):
        _call(self._bucket.delete, key)

    def exists(self, key):
        return _call(self._bucket.exists, key)

    def keys(self):
        """Every key in the bucket."""
        keys, cursor = [], None
        while True:
            page = _call(self._bucket.list_keys, cursor)
            keys.extend(page.keys)
            cursor = page.cursor
            if cursor is None:
                return keys

    def increment(self, key, delta=1):
        """Add `delta` to the number at `key` (0 if unset) in one step on
        the host; the new number."""
        return _call(_atomics.increment, self._bucket, key, delta)

    def getMany(self, keys):
        """{key: value} for those of `keys` that are set."""
        pairs = _call(_batch.get_many, self._bucket, list(keys))
        return dict(pair for pair in pairs if pair is not None)

    def setMany(self, values):
        """Set every key of the dict `values` to its value."""
        _call(_batch.set_many, self._bucket, list(values.items()))

    def deleteMany(self, keys):
        _call(_batch.delete_many, self._bucket, list(keys))
