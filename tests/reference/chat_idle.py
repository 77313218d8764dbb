# The seed's ChatRoomServer example with an idle timeout (Twisted's
# TimeoutMixin), port and timeout in seconds from argv: a client silent
# for that long hears "idle timeout" and is disconnected.
import sys
from twisted.internet import reactor, protocol, endpoints
from twisted.protocols import basic, policies

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
        self.idleTimeout = idleTimeout

    def buildProtocol(self, addr):
        return PubProtocol(self)

endpoints.serverFromString(reactor, "tcp:%s:interface=127.0.0.1" % sys.argv[1]).listen(PubFactory(float(sys.argv[2])))
reactor.run()
