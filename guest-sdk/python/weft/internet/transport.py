"""A connection's transport with Twisted's ITransport method names, over
the host's `weft:protocol/transport` resource."""

from weft.internet.address import address


class Transport:
    """What a protocol writes to (Twisted's ITCPTransport)."""

    def __init__(self, host_transport):
        self._host = host_transport
        self.connected = True
        self.disconnecting = False
        self._peer = None
        self._local = None

    def write(self, data):
        if not isinstance(data, bytes):
            raise TypeError(f"Data must be bytes, not {type(data).__name__}")
        if data:
            self._host.write(data)

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        """Close once everything written has been sent."""
        self.disconnecting = True
        self._host.lose_connection()

    def abortConnection(self):
        """Close now, dropping what has not been sent."""
        self.disconnecting = True
        self._host.abort_connection()

    def loseWriteConnection(self):
        """Half-close: send FIN after what was written, keep reading."""
        self._host.lose_write_connection()

    def pauseProducing(self):
        self._host.pause_producing()

    def resumeProducing(self):
        self._host.resume_producing()

    def registerProducer(self, producer, streaming):
        """Consume `producer`'s input: while this connection has more
        unsent output than the operator's write buffer, the host stops
        reading from `producer`, another connection's transport."""
        if not isinstance(producer, Transport):
            raise TypeError("weft's transports take other transports as producers")
        self._host.register_producer(producer._host)

    def unregisterProducer(self):
        self._host.unregister_producer()

    def stopProducing(self):
        self.loseConnection()

    def getPeer(self):
        if self._peer is None:
            self._peer = address(self._host.get_peer())
        return self._peer

    def getHost(self):
        if self._local is None:
            self._local = address(self._host.get_host())
        return self._local

    def setTcpNoDelay(self, enabled):
        """The host sets TCP_NODELAY on every connection."""

    def getTcpNoDelay(self):
        return True
