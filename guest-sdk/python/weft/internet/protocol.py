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

    def doStart(self):
        """Kept for Twisted's interface; weft starts a factory on first use."""

    def doStop(self):
        """Kept for Twisted's interface."""


ServerFactory = Factory
