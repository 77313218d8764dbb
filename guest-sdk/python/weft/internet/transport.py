"""A connection's transport with Twisted's ITransport method names, over
the host's `weft:protocol/transport` resource. What one call into the guest
writes to a transport reaches the host as one write, when the call ends."""

from weft.internet.address import address

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
    _dirty.clear()
    _pending_bytes = 0


class Transport:
    """What a protocol writes to (Twisted's ITCPTransport)."""

    def __init__(self, host_transport):
        self._host = host_transport
        self.connected = True
        self.disconnecting = False
        self._peer = None
        self._local = None
        self._pending = []
        # The host said the connection takes no more writes (it ended, or
        # was aborted by the write limit): later writes are dropped at once.
        self._dead = False

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
            _dirty.append(self)
        pending.append(data)
        _pending_bytes += len(data)
        if _pending_bytes > _MAX_PENDING:
            flush_all()

    def _flush(self):
        pending = self._pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            if not self._host.write_checked(data):
                self._dead = True

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        """Close once everything written has been sent."""
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

    def pauseProducing(self):
        self._flush()
        self._host.pause_producing()

    def resumeProducing(self):
        self._flush()
        self._host.resume_producing()

    def registerProducer(self, producer, streaming):
        """Consume `producer`'s input: while this connection has more
        unsent output than the operator's write buffer, the host stops
        reading from `producer`, another connection's transport."""
        if not isinstance(producer, Transport):
            raise TypeError("weft's transports take other transports as producers")
        self._flush()
        self._host.register_producer(producer._host)

    def unregisterProducer(self):
        self._host.unregister_producer()

    def stopProducing(self):
        self.loseConnection()

    def getPeer(self):
        if self._peer is None:
            self._peer = address(self._host.get_peer_address())
        return self._peer

    def getHost(self):
        if self._local is None:
            self._local = address(self._host.get_host_address())
        return self._local

    def setTcpNoDelay(self, enabled):
        """The host sets TCP_NODELAY on every connection."""

    def getTcpNoDelay(self):
        return True
