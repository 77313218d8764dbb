"""Protocol and Factory in Twisted's shape (twisted.internet.protocol)."""

from weft import _served
from weft.internet import error
from weft.python.failure import Failure

connectionDone = Failure(error.ConnectionDone())


class Protocol:
    """The handler of one connection: override what you need."""

    factory = None
    transport = None
    connected = 0

    def makeConnection(self, transport):
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def connectionMade(self):
        """The connection is up; `self.transport` is ready."""

    def dataReceived(self, data):
        """Bytes arrived; boundaries carry no meaning."""

    def connectionLost(self, reason=connectionDone):
        """The connection ended; `reason` is a Failure."""

    def logPrefix(self):
        return self.__class__.__name__


class Factory:
    """Builds one protocol per connection and holds what they share. The
    guest module's one Factory subclass is what weft serves."""

    protocol = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _served.defined("factory", cls)

    @classmethod
    def forProtocol(cls, protocol, *args, **kwargs):
        factory = cls(*args, **kwargs)
        factory.protocol = protocol
        return factory

    def buildProtocol(self, addr):
        built = self.protocol()
        built.factory = self
        return built

    numPorts = 0

    def doStart(self):
        """The instance started: calls startFactory (weft serves one port
        per instance)."""
        if not self.numPorts:
            self.startFactory()
        self.numPorts += 1

    def doStop(self):
        """The host is shutting down: calls stopFactory."""
        if self.numPorts:
            self.numPorts -= 1
            if not self.numPorts:
                self.stopFactory()

    def startFactory(self):
        """Set up what the factory needs before its first connection."""

    def stopFactory(self):
        """Tear down what startFactory set up."""


ServerFactory = Factory


class ClientFactory(Factory):
    """A factory for outbound connections (twisted.internet.protocol
    .ClientFactory): told when a connection could not be made."""

    def __init_subclass__(cls, **kwargs):
        # A client factory is not what the module serves.
        super(Factory, cls).__init_subclass__(**kwargs)

    def startedConnecting(self, connector):
        """The host started connecting."""

    def clientConnectionFailed(self, connector, reason):
        """The connection could not be made; `reason` is a Failure."""

    def clientConnectionLost(self, connector, reason):
        """An established connection was lost."""



class DatagramProtocol:
    """The handler of a datagram service (Twisted's DatagramProtocol): the
    one instance a guest module passes to `reactor.listenUDP`, called for
    every datagram the service's socket receives."""

    transport = None
    numPorts = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _served.defined("datagram", cls)

    def makeConnection(self, transport):
        self.transport = transport
        self.doStart()

    def doStart(self):
        if not self.numPorts:
            self.startProtocol()
        self.numPorts += 1

    def doStop(self):
        self.numPorts -= 1
        self.transport = None
        if not self.numPorts:
            self.stopProtocol()

    def startProtocol(self):
        """The socket is ready; `self.transport` can write."""

    def stopProtocol(self):
        """The service is stopping."""

    def datagramReceived(self, datagram, addr):
        """A datagram arrived from `addr`, a (host, port) tuple."""

    def logPrefix(self):
        return self.__class__.__name__
