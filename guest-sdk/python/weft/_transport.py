"""A connection's transport for Twisted protocols (ITCPTransport), over the
host's `weft:protocol/transport` resource. What one call into the guest
writes to a transport reaches the host as one write, when the call ends.
The guest's own producers wait for a slow reader through the host's
write-buffer watch (`watch-write-buffer`, and the `producers` export)."""

import itertools

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

# Transports with a producer of the guest's own registered, by the token the
# host watches their write buffer with: the `producers` export finds them
# here. Tokens are never reused, so a late word for an unregistered
# producer finds nothing.
_watched = {}
_tokens = itertools.count(1)

# Pulls from a pull producer in one call while the write buffer has room:
# FileSender's 16 KiB each, so up to 256 KiB a turn, and other connections
# get their turn between.
_PULLS_PER_TURN = 16


def watched(token):
    """The transport whose write buffer the host watches with `token`, or
    None once its producer was unregistered or its connection ended."""
    return _watched.get(token)


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
        # Called with the method's name when the guest's own producer
        # raises: logs it and aborts the connection.
        self._producer_raised = None
        self.producer = None
        self.streamingProducer = False
        # The guest's own producer is paused because the host said the
        # unsent output reached the write buffer (Twisted's producerPaused):
        # the output's pause, kept apart from the input's above.
        self.producerPaused = False
        # The token the host watches the write buffer with for that
        # producer, and a pull producer's next pull (a DelayedCall).
        self._token = None
        self._next_pull = None
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
        if not self.connected:
            # Twisted's: a consumer that has ended stops its producer.
            producer.stopProducing()
            return
        self.producer, self.streamingProducer = producer, streaming
        self.producerPaused = False
        # What was written before counts towards the write buffer now.
        self._flush()
        if isinstance(producer, Transport):
            # The host stops reading the other connection while this one's
            # output is above the operator's write buffer.
            self._host.register_producer(producer._host)
            return
        # The guest's own: the host says when this connection's unsent
        # output reaches the write buffer (at once if it has) and when it
        # drains below half, through `producers` (_full and _drained).
        self._token = next(_tokens)
        _watched[self._token] = self
        self._host.watch_write_buffer(self._token)
        if not streaming:
            # A pull producer writes once per resumeProducing: once now, as
            # Twisted does.
            self._pull()

    def _pull(self):
        """Ask the pull producer for more, as Twisted does each time the
        socket drains: a few times a turn while the unsent output is below
        the write buffer, else once the host says it drained."""
        from twisted.internet import reactor

        self._next_pull = None
        producer = self.producer
        for _ in range(_PULLS_PER_TURN):
            if producer is None or self.streamingProducer or self.producerPaused or self._dead or not self.connected:
                return
            # It may have raised, or unregistered (FileSender at the end of
            # its file).
            if not self._tell_producer("resumeProducing") or self.producer is not producer or self._dead:
                return
            # Counted by the host only once handed to it. A yes means the
            # host tells the drain (resume-producing), whenever it comes.
            self._flush()
            if self._host.write_buffer_full():
                self.producerPaused = True
                return
        self._next_pull = reactor.callLater(0, self._pull)

    def _full(self):
        """`producers.pause-producing`: the unsent output reached the write
        buffer (Twisted pauses a streaming producer; a pull producer is not
        pulled)."""
        if self.producer is None or self.producerPaused:
            return
        self.producerPaused = True
        if self.streamingProducer:
            self._tell_producer("pauseProducing")
        elif self._next_pull is not None:
            self._next_pull.cancel()
            self._next_pull = None

    def _drained(self):
        """`producers.resume-producing`: the unsent output drained below
        half the write buffer."""
        if self.producer is None or not self.producerPaused:
            return
        self.producerPaused = False
        if self.streamingProducer:
            self._tell_producer("resumeProducing")
        else:
            self._pull()

    def _tell_producer(self, method):
        """Call the producer's `method`; False if it raised (the connection
        is then aborted, as Twisted drops one whose producer raised)."""
        try:
            getattr(self.producer, method)()
        except Exception:
            self._producer_raised(method)
            return False
        return True

    def _forget_producer(self):
        """Stop the host's watch for the guest's own producer; returns it."""
        producer = self.producer
        if self._token is not None:
            del _watched[self._token]
            self._token = None
            if self._next_pull is not None:
                self._next_pull.cancel()
                self._next_pull = None
        self.producer = None
        self.producerPaused = False
        return producer

    def unregisterProducer(self):
        if isinstance(self.producer, Transport):
            self._host.unregister_producer()
        elif self._token is not None and self.connected:
            self._host.watch_write_buffer(None)
        self._forget_producer()

    def spliceTo(self, consumer):
        """weft's own, not Twisted's: relay what this connection receives
        from now on to the transport `consumer`, in the host, without
        calling dataReceived, so that a proxy passing bytes on unchanged
        pays no call per chunk. In the host this connection becomes
        `consumer`'s producer, so a slow reader of `consumer` stops the
        reads here. connectionLost, and readConnectionLost of a
        half-closeable protocol, are still called."""
        if not isinstance(consumer, Transport):
            raise TypeError(f"spliceTo needs a weft transport, not {type(consumer).__name__}")
        # What was written to it before goes out before what is relayed.
        consumer._flush()
        self._host.splice_to(consumer._host)

    def _lost(self):
        """The connection ended: as Twisted's FileDescriptor.connectionLost,
        the guest's own producer is stopped and forgotten (a connection
        registered as the producer is left to the protocol, as before)."""
        self.connected = False
        if self.producer is not None and not isinstance(self.producer, Transport):
            self._forget_producer().stopProducing()

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
