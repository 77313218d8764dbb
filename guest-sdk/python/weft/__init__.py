"""weft's Python guest SDK: Twisted's protocol classes, served by the weft
host. A guest module defines a `Factory` (or a twisted.web-style
`Resource`) as it would for Twisted, or passes a `DatagramProtocol` to
`reactor.listenUDP`; the host owns the reactor and the listening socket,
so the `reactor` and `endpoints` lines go. `weft-python MODULE.py` (or
`cargo xtask python`) builds a module into a component.
"""

# Before any guest code runs: Python's own sockets fail saying why.
from weft import _sockets  # noqa: E402, F401
