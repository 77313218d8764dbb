"""The operator's settings for this service (`config.KEY=VALUE` after the
endpoint), read through `wasi:config/store`."""

try:
    # In a `stateful-service`, whose world has a second `store`
    # (wasi:keyvalue's), componentize-py names this one in full.
    from wit_world.imports import wasi_config_store as _store
except ImportError:
    from wit_world.imports import store as _store


def get(key, default=None):
    """The value of `key`, or `default` when the operator did not set it."""
    try:
        value = _store.get(key)
    except Exception:
        return default
    return default if value is None else value
