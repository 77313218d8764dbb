# The reactor test guest (tests/guests/reactor) in Python, a Twisted
# program: reactor.callLater and its
# IDelayedCall, task.LoopingCall, defer.inlineCallbacks, endpoints
# .clientFromString(...).connect(), protocol.ClientFactory, config.
# Commands, one per line: `later MS NAME` (`fired NAME after MS`),
# `cancel NAME`, `reset NAME MS`, `delay NAME MS`, `active NAME`,
# `loop MS N` (then `looped`), `config KEY`, `started`, `connect ENDPOINT`
# (the backend's lines come back as `backend: LINE`), `send LINE`; on
# shutdown every client hears `stopping`. Other lines echo.
import time

from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.protocols import basic

from weft import config


class Backend(basic.LineReceiver):
    def connectionMade(self):
        self.factory.driver.factory.backend = self

    def lineReceived(self, line):
        self.factory.driver.sendLine(b"backend: " + line)

    def connectionLost(self, reason):
        self.factory.driver.sendLine(b"backend lost")


class BackendFactory(protocol.ClientFactory):
    protocol = Backend

    def __init__(self, driver):
        self.driver = driver


class Driver(basic.LineReceiver):
    def __init__(self, factory):
        self.factory = factory
        self.calls = {}

    def connectionMade(self):
        self.factory.clients.append(self)

    def connectionLost(self, reason):
        self.factory.clients.remove(self)

    def lineReceived(self, line):
        words = line.decode().split(" ")
        command, args = words[0], words[1:]
        handler = getattr(self, "do_" + command.replace("-", "_"), None)
        if handler is None:
            self.sendLine(line)
        else:
            handler(*args)

    def do_later(self, ms, name):
        asked = time.monotonic()

        def fired():
            took = int((time.monotonic() - asked) * 1000)
            self.sendLine(b"fired %s after %d" % (name.encode(), took))

        self.calls[name] = reactor.callLater(int(ms) / 1000, fired)

    def do_cancel(self, name):
        self.calls[name].cancel()

    def do_reset(self, name, ms):
        self.calls[name].reset(int(ms) / 1000)

    def do_delay(self, name, ms):
        self.calls[name].delay(int(ms) / 1000)

    def do_active(self, name):
        active = name in self.calls and self.calls[name].active()
        self.sendLine(b"active %s %s" % (name.encode(), b"true" if active else b"false"))

    def do_loop(self, ms, times):
        ticks = []

        def tick():
            ticks.append(1)
            self.sendLine(b"tick %d" % len(ticks))
            if len(ticks) == int(times):
                loop.stop()

        loop = task.LoopingCall(tick)
        loop.start(int(ms) / 1000, now=False).addCallback(lambda _: self.sendLine(b"looped"))

    def do_config(self, key):
        value = config.get(key)
        self.sendLine(b"config %s %s" % (key.encode(), (value or "unset").encode()))

    def do_started(self):
        self.sendLine(b"started %d" % self.factory.started)

    @defer.inlineCallbacks
    def do_connect(self, endpoint):
        try:
            yield endpoints.clientFromString(reactor, endpoint).connect(BackendFactory(self))
        except Exception as failure:
            self.sendLine(b"connect failed " + type(failure).__name__.encode())
        else:
            self.sendLine(b"connected")

    def do_send(self, *words):
        if self.factory.backend is not None:
            self.factory.backend.sendLine(" ".join(words).encode())


class DriverFactory(protocol.Factory):
    def __init__(self):
        self.started = 0
        self.backend = None
        self.clients = []

    def startFactory(self):
        self.started += 1

    def stopFactory(self):
        for client in self.clients:
            client.sendLine(b"stopping")

    def buildProtocol(self, addr):
        return Driver(self)


endpoints.serverFromString(reactor, "tcp:1234").listen(DriverFactory())
reactor.run()
