# The seed's ChatRoomServer example (tests/reference/chat.py) with the room
# kept by the host: every line goes through the topic "room", so every
# worker, instance (isolation=connection) and, on Redis, process of the
# service is one room. config.crash=LINE makes that line trap the instance.
from twisted.internet import reactor, protocol, endpoints
from twisted.protocols import basic

from weft import config, log, messaging

class PubProtocol(basic.LineReceiver):
    def __init__(self, factory):
        self.factory = factory

    def connectionMade(self):
        self.factory.clients.add(self)

    def connectionLost(self, reason):
        self.factory.clients.remove(self)

    def lineReceived(self, line):
        if self.factory.crash is not None and line == self.factory.crash:
            while True:  # a trap: the instance's deadline ends it
                pass
        source = u"<{}> ".format(self.transport.getHost()).encode("ascii")
        try:
            messaging.publish("room", source + line)
        except messaging.MessagingError as error:
            log.warn(f"a line was not sent to the room: {error.reason}")
            self.sendLine(b"* not sent: " + error.reason.encode("ascii"))

class PubFactory(protocol.Factory):
    def __init__(self):
        self.clients = set()

    def startFactory(self):
        # weft's configuration answers once the component is served.
        crash = config.get("crash")
        self.crash = crash.encode() if crash is not None else None
        messaging.subscribe("room", self)

    # What the room brings: every line, to each of this instance's clients;
    # and, should the host lose the room (its Redis server away), a notice.
    def messageReceived(self, message):
        for c in self.clients:
            c.sendLine(message)

    def messagesDropped(self, count):
        self.messageReceived(b"* %d lines were lost: this server fell behind" % count)

    def subscriptionInterrupted(self):
        self.messageReceived(b"* the room is unreachable: lines sent now are lost")

    def subscriptionResumed(self):
        self.messageReceived(b"* the room is back")

    def buildProtocol(self, addr):
        return PubProtocol(self)

endpoints.serverFromString(reactor, "tcp:1025").listen(PubFactory())
reactor.run()
