# The seed's ChatRoomServer example (tests/reference/chat.py) on weft, with
# the optional idle timeout of tests/reference/chat_idle.py, in seconds
# from config.idle-timeout (unset: no timeout).
from weft import config
from weft.internet import protocol
from weft.protocols import basic, policies

class PubProtocol(basic.LineReceiver, policies.TimeoutMixin):
    def __init__(self, factory):
        self.factory = factory

    def connectionMade(self):
        self.factory.clients.add(self)
        self.setTimeout(self.factory.idleTimeout)

    def connectionLost(self, reason):
        self.setTimeout(None)
        self.factory.clients.remove(self)

    def lineReceived(self, line):
        self.resetTimeout()
        for c in self.factory.clients:
            source = u"<{}> ".format(self.transport.getHost()).encode("ascii")
            c.sendLine(source + line)

    def timeoutConnection(self):
        self.sendLine(b"idle timeout")
        self.transport.loseConnection()

class PubFactory(protocol.Factory):
    def __init__(self, idleTimeout=None):
        self.clients = set()
        if idleTimeout is None and config.get("idle-timeout"):
            idleTimeout = float(config.get("idle-timeout"))
        self.idleTimeout = idleTimeout

    def buildProtocol(self, addr):
        return PubProtocol(self)
