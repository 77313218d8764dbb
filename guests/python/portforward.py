# Twisted's port forwarder (twisted/protocols/portforward.py) on weft: its
# classes as Twisted has them, with two changes. ProxyFactory reads its
# backend from config.backend=HOST:PORT when given no arguments, since weft
# builds the factory it serves; and a half-close is passed on to the other
# side (readConnectionLost) instead of closing both, which Twisted does.
from weft import config
from weft.internet import protocol


class Proxy(protocol.Protocol):
    noisy = True
    peer = None

    def setPeer(self, peer):
        self.peer = peer

    def connectionLost(self, reason):
        if self.peer is not None:
            self.peer.transport.loseConnection()
            self.peer = None

    def dataReceived(self, data):
        self.peer.transport.write(data)

    def readConnectionLost(self):
        if self.peer is not None:
            self.peer.transport.loseWriteConnection()


class ProxyClient(Proxy):
    def connectionMade(self):
        self.peer.setPeer(self)

        # Wire this and the peer transport together to enable
        # flow control (this stops connections from filling
        # this proxy memory when one side produces data at a
        # higher rate than the other can consume).
        self.transport.registerProducer(self.peer.transport, True)
        self.peer.transport.registerProducer(self.transport, True)

        # We're connected, everybody can read to their hearts content.
        self.peer.transport.resumeProducing()


class ProxyClientFactory(protocol.ClientFactory):
    protocol = ProxyClient

    def setServer(self, server):
        self.server = server

    def buildProtocol(self, addr):
        prot = protocol.ClientFactory.buildProtocol(self, addr)
        prot.setPeer(self.server)
        return prot

    def clientConnectionFailed(self, connector, reason):
        self.server.transport.loseConnection()


class ProxyServer(Proxy):
    clientProtocolFactory = ProxyClientFactory
    reactor = None

    def connectionMade(self):
        # Don't read anything from the connecting client until we have
        # somewhere to send it to.
        self.transport.pauseProducing()

        client = self.clientProtocolFactory()
        client.setServer(self)

        if self.reactor is None:
            from weft.internet import reactor

            self.reactor = reactor
        self.reactor.connectTCP(self.factory.host, self.factory.port, client)


class ProxyFactory(protocol.Factory):
    """
    Factory for port forwarder.
    """

    protocol = ProxyServer

    def __init__(self, host=None, port=None):
        if host is None:
            host, _, port = config.get("backend", "").rpartition(":")
            host = host.strip("[]")
        self.host = host
        self.port = int(port or 0)
