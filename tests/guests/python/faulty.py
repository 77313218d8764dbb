# A Python guest whose protocol raises on command: `raise` raises in
# dataReceived; anything else is echoed. Built like the Python guests.
from weft.internet import protocol


class Faulty(protocol.Protocol):
    def dataReceived(self, data):
        if data.strip() == b"raise":
            raise ZeroDivisionError("asked to raise")
        self.transport.write(data)


class FaultyFactory(protocol.Factory):
    protocol = Faulty
