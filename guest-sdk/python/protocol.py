"""The `weft:protocol/protocol` export, which componentize-py looks for in
a module of this name: it serves the factory (or resource) the guest
module defines, through the Twisted-shaped classes of the `weft` package.
"""

from wit_world.exports import protocol as exported

from weft import _served
from weft.internet import error
from weft.internet.transport import _dirty, flush_all
from weft.python.failure import Failure
# Loaded now, while componentize-py builds the component: a module first
# imported at run time is not in it (a Site to serve; what reactor
# .connectTCP and the guest's own late imports reach for).
from weft import config  # noqa: F401
from weft.internet import defer, endpoints, reactor, task  # noqa: F401
from weft.protocols import policies  # noqa: F401
from weft.web import server  # noqa: F401

_REASONS = {
    0: error.ConnectionDone,
    1: error.ConnectionLost,
    2: error.ConnectionAborted,
}


class Protocol(exported.Protocol):
    """One connection: the guest's protocol, built by its factory."""

    def __init__(self, transport, client):
        self._connection = _served.Connection(transport, client)
        flush_all()

    def data_received(self, data):
        # The hot path, so Connection.call's work inline: a protocol that
        # raises aborts its connection; one that is gone hears nothing.
        protocol = self._connection.protocol
        if protocol is not None:
            try:
                protocol.dataReceived(data)
            except Exception:
                self._connection.failed("dataReceived")
        if _dirty:
            flush_all()

    def read_connection_lost(self):
        self._connection.read_connection_lost()
        flush_all()

    def connection_lost(self, reason):
        why = _REASONS[reason.value]()
        self._connection.lost(Failure(why))
        flush_all()
