"""A connection's transport for Twisted protocols (ITCPTransport), over the
host's `weft:protocol/transport` resource. What one call into the guest
writes to a transport reaches the host as one write, when the call ends."""

from twisted.internet import interfaces
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from zope.interface import directlyProvides, implementer

from wit_world.imports.types import AddressFamily, SocketAddress_Tcp

# Output held in transports above which it is handed to the host at once,
# so that a call fanning out to many transports holds at most this much.
_MAX_PENDING = 1 << 20

# Transports with output not yet handed to the host, and how much. The list
# is never rebound, so that the SDK's export glue can test it directly.
_dirty = []
_pending_bytes = 0


def flush_all():
    """Hand every transport's pending output to the host; the SDK calls
    this when each call into the guest ends."""
    global _pending_bytes
    for transport in _dirty:
        # Transport._flush, inline: this runs at the end of every call.
        pending = transport._pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            if not transport._host.write_checked(data):
                transport._dead = True
        transport._queued = False
        transport._tell_paused()
    _dirty.clear()
    _pending_bytes = 0


def address(wit_address):
    """The Twisted address of a `weft:protocol/types.socket-address`."""
    if not isinstance(wit_address, SocketAddress_Tcp):
        return UNIXAddress(wit_address.value)
    tcp = wit_address.value
    kind = IPv4Address if tcp.family == AddressFamily.IPV4 else IPv6Address
    return kind("TCP", tcp.host, tcp.port)


@implementer(interfaces.ITCPTransport, interfaces.IPushProducer, interfaces.IConsumer)
class Transport:
    """What a protocol writes to; the host sends it."""

    def __init__(self, host_transport):
        self._host = host_transport
        self.connected = True
        self.disconnecting = False
        self._peer = None
        self._local = None
        self._pending = []
        # In `_dirty`, to be flushed when the call ends.
        self._queued = False
        # Whether the protocol paused reading, whether the SDK did (it has
        # input the protocol has not been given yet), and what the host was
        # last told: told when the call ends, so that a pause and a resume
        # in one call (twisted.web's, around each request) cost nothing.
        self._protocol_paused = False
        self._sdk_paused = False
        self._host_paused = False
        # Called when the protocol resumes, to give it the input held back.
        self._resumed = None
        self.producer = None
        self.streamingProducer = False
        # The host said the connection takes no more writes (it ended, or
        # was aborted by the write limit): later writes are dropped at once.
        self._dead = False
        if host_transport.is_secure():
            directlyProvides(self, interfaces.ISSLTransport)

    def _mark(self):
        if not self._queued:
            self._queued = True
            _dirty.append(self)

    def _tell_paused(self):
        paused = self._protocol_paused or self._sdk_paused
        if paused != self._host_paused:
            self._host_paused = paused
            if paused:
                self._host.pause_producing()
            else:
                self._host.resume_producing()

    def write(self, data):
        global _pending_bytes
        if not isinstance(data, bytes):
            raise TypeError(f"Data must be bytes, not {type(data).__name__}")
        if self._dead:
            return
        pending = self._pending
        if not pending:
            if not data:
                return
            if not self._queued:
                self._queued = True
                _dirty.append(self)
        pending.append(data)
        _pending_bytes += len(data)
        if _pending_bytes > _MAX_PENDING:
            flush_all()

    def writeSequence(self, data):
        self.write(b"".join(data))

    def _flush(self):
        pending = self._pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            if not self._host.write_checked(data):
                self._dead = True

    def loseConnection(self):
        """Close once everything written has been sent."""
        if self.disconnecting:
            return
        self.disconnecting = True
        self._flush()
        self._host.lose_connection()

    def abortConnection(self):
        """Close now, dropping what has not been sent."""
        self.disconnecting = True
        self._flush()
        self._host.abort_connection()

    def loseWriteConnection(self):
        """Half-close: send FIN after what was written, keep reading."""
        self._flush()
        self._host.lose_write_connection()

    # IPushProducer: the connection's input.

    def pauseProducing(self):
        if not self._protocol_paused:
            self._protocol_paused = True
            self._mark()

    def resumeProducing(self):
        if self._protocol_paused:
            self._protocol_paused = False
            self._mark()
            if self._resumed is not None:
                self._resumed()

    def stopProducing(self):
        self.loseConnection()

    # IConsumer: another connection's input, or the guest's own producer.

    def registerProducer(self, producer, streaming):
        if self.producer is not None:
            raise RuntimeError(
                f"Cannot register producer {producer}, because producer {self.producer} was never unregistered."
            )
        self.producer, self.streamingProducer = producer, streaming
        if isinstance(producer, Transport):
            # The host stops reading the other connection while this one's
            # output is above the operator's write buffer.
            self._flush()
            self._host.register_producer(producer._host)
        elif not streaming:
            # A pull producer writes once per resumeProducing: ask again
            # on each turn of the reactor while it is registered.
            self._pull()

    def _pull(self):
        from twisted.internet import reactor

        producer = self.producer
        if producer is None or self.streamingProducer or self._dead or not self.connected:
            return
        producer.resumeProducing()
        self._flush()
        reactor.callLater(0, self._pull)

    def unregisterProducer(self):
        if isinstance(self.producer, Transport):
            self._host.unregister_producer()
        self.producer = None

    def getPeer(self):
        if self._peer is None:
            self._peer = address(self._host.get_peer_address())
        return self._peer

    def getHost(self):
        if self._local is None:
            self._local = address(self._host.get_host_address())
        return self._local

    def getHandle(self):
        raise NotImplementedError("weft's host owns the socket: a guest has no handle to it")

    def setTcpNoDelay(self, enabled):
        """The host sets TCP_NODELAY on every connection."""

    def getTcpNoDelay(self):
        return True

    def setTcpKeepAlive(self, enabled):
        """The host decides keep-alives."""

    def getTcpKeepAlive(self):
        return False

    def logPrefix(self):
        return "weft"
