"""Line-oriented protocols (twisted.protocols.basic), step for step; and,
unlike Twisted's, within a time budget per call: a burst of input (a paste
into a room of a thousand) is handed over across many calls, the peer not
read meanwhile, rather than in one call that outlasts its deadline."""

import time

from weft.internet import protocol, reactor

# How long one call hands over lines before carrying on in a later one,
# well within the host's default 100 ms deadline.
CALL_BUDGET = 0.010
# Lines handed over between looks at the clock.
_LINES_PER_CLOCK_READ = 16


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
    _backlogged = False

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
            started, handled = time.monotonic(), 0
            while self._buffer and not self.paused:
                if self.line_mode:
                    if handled == _LINES_PER_CLOCK_READ:
                        handled = 0
                        if time.monotonic() - started >= CALL_BUDGET:
                            self._carryOnLater()
                            return None
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
                        handled += 1
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

    def _carryOnLater(self):
        """Out of time with lines left: stop reading, carry on next call."""
        if not self._backlogged:
            self._backlogged = True
            self.transport.pauseProducing()
        reactor.callLater(0, self._carryOn)

    def _carryOn(self):
        if not self.transport.connected:
            return
        self._backlogged = False
        self.dataReceived(b"")
        if not self._backlogged and not self.paused:
            self.transport.resumeProducing()

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
