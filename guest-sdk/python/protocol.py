"""The `weft:protocol/protocol` export, which componentize-py looks for in
a module of this name: one connection, served by the factory of the
program's listen (weft._served)."""

from wit_world.exports import protocol as exported

from weft import _served, _reactor
from weft._served import SLICE, _after
from weft._transport import _dirty, flush_all


class Protocol(exported.Protocol):
    """One connection: the program's protocol, built by its factory."""

    def __init__(self, transport, client):
        _served.begin_serving()
        self._connection = _served.Connection(transport, client)
        _after()

    def data_received(self, data):
        # The hot path, so Connection.call's work inline: a protocol that
        # raises aborts its connection; one that is gone hears nothing.
        connection = self._connection
        protocol = connection.protocol
        if protocol is not None:
            if len(data) > SLICE or connection.backlog or connection.transport._protocol_paused:
                connection.feed(data)
            else:
                try:
                    protocol.dataReceived(data)
                except Exception:
                    connection.failed("dataReceived")
        if _dirty:
            flush_all()
        _reactor._reactor.arm()

    def read_connection_lost(self):
        self._connection.read_connection_lost()
        _after()

    def connection_lost(self, reason):
        self._connection.lost(reason.value)
        _after()
