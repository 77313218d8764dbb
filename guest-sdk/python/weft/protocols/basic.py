"""Line-oriented protocols (twisted.protocols.basic), step for step."""

from weft.internet import protocol


class LineReceiver(protocol.Protocol):
    """Splits input into lines at `delimiter` and calls `lineReceived` for
    each; a line longer than `MAX_LENGTH` calls `lineLengthExceeded`, which
    closes the connection. `setRawMode` switches to `rawDataReceived`."""

    _buffer = b""
    _busyReceiving = False
    delimiter = b"\r\n"
    MAX_LENGTH = 16384
    line_mode = 1
    paused = False

    def clearLineBuffer(self):
        """Drop and return what is buffered."""
        buffered, self._buffer = self._buffer, b""
        return buffered

    def dataReceived(self, data):
        if self._busyReceiving:
            self._buffer += data
            return None
        try:
            self._busyReceiving = True
            self._buffer += data
            while self._buffer and not self.paused:
                if self.line_mode:
                    try:
                        line, self._buffer = self._buffer.split(self.delimiter, 1)
                    except ValueError:
                        if len(self._buffer) >= (self.MAX_LENGTH + len(self.delimiter)):
                            line, self._buffer = self._buffer, b""
                            return self.lineLengthExceeded(line)
                        return None
                    else:
                        if len(line) > self.MAX_LENGTH:
                            exceeded = line + self.delimiter + self._buffer
                            self._buffer = b""
                            return self.lineLengthExceeded(exceeded)
                        why = self.lineReceived(line)
                        if why or self.transport and self.transport.disconnecting:
                            return why
                else:
                    data, self._buffer = self._buffer, b""
                    why = self.rawDataReceived(data)
                    if why:
                        return why
            return None
        finally:
            self._busyReceiving = False

    def setLineMode(self, extra=b""):
        self.line_mode = 1
        if extra:
            return self.dataReceived(extra)
        return None

    def setRawMode(self):
        self.line_mode = 0

    def rawDataReceived(self, data):
        raise NotImplementedError

    def lineReceived(self, line):
        raise NotImplementedError

    def sendLine(self, line):
        return self.transport.write(line + self.delimiter)

    def lineLengthExceeded(self, line):
        return self.transport.loseConnection()

    def pauseProducing(self):
        self.paused = True
        self.transport.pauseProducing()

    def resumeProducing(self):
        self.paused = False
        self.transport.resumeProducing()
        self.dataReceived(b"")

    def stopProducing(self):
        self.paused = True
        self.transport.stopProducing()
