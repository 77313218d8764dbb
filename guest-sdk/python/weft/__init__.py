"""weft's Python guest SDK: Twisted programs, served by the weft host.
`weft-python app.py` (or `cargo xtask python`) builds an ordinary Twisted
program into a component, with weft's reactor installed before it runs;
`weft.config`, `weft.log`, `weft.keyvalue` and `weft.messaging` are the
host's services that Twisted has no names for.
"""

# Before any guest code runs: Python's own sockets fail saying why.
from weft import _sockets  # noqa: E402, F401
