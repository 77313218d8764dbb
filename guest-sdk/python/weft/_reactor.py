"""Twisted's reactor for a program inside a weft component: the host owns
the sockets and the clock, so listens are recorded for the services to
serve, Twisted's timed-call queue is kept armed with one host timer, and
connects go through the host. Installed before the program is imported."""

import heapq
import sys

from twisted.internet import base, error, interfaces
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from componentize_py_types import Err
from wit_world.imports.types import ConnectError

try:
    from wit_world.imports import reactor as _host
except ImportError:
    # A datagram guest's world has no timers or outbound connections.
    _host = None

NO_THREADS = (
    "weft runs a guest in one thread and grants it no threads: "
    "use the reactor's callLater, or move the blocking work to a service the "
    "guest connects to"
)
NO_PROCESSES = "weft's sandbox grants a guest no processes"


class Listen:
    """A `listenTCP`/`listenSSL`/`listenUNIX`/`listenUDP` the program made:
    which factory (or datagram protocol) a service serves, and where the
    program asked for it, for choosing between several."""

    def __init__(self, kind, where, served=None, make=None):
        self.kind, self.where, self._served, self._make = kind, where, served, make

    @property
    def served(self):
        """The factory (or datagram protocol); made on first use if the
        program gave a class to make it (it may read weft.config, which
        answers only once the component is served)."""
        if self._served is None:
            self._served = self._make()
        return self._served

    def describe(self):
        return f"{self.kind}:{self.where}"


@implementer(interfaces.IListeningPort)
class Port:
    """What `listenTCP` and its kin return. weft's host listens; this keeps
    the program's own address and starts and stops its factory with the
    instance."""

    def __init__(self, listen, address):
        self._listen, self._address = listen, address
        self._factory_started = False
        self.connected = True

    def startListening(self):
        """The host listens; the factory starts with the instance."""

    def start_factory(self):
        if not self._factory_started and hasattr(self._listen.served, "doStart"):
            self._factory_started = True
            self._listen.served.doStart()

    def stopListening(self):
        self.connected = False
        if self._factory_started:
            self._factory_started = False
            self._listen.served.doStop()
        return succeed(None)

    loseConnection = stopListening

    def getHost(self):
        return self._address


class _PendingConnect:
    """A connect the host has not answered yet (BaseConnector's transport
    until then)."""

    def __init__(self, connector, token):
        self._connector, self._token = connector, token

    def failIfNotConnected(self, reason):
        if self._connector.reactor._connects.pop(self._token, None) is not None:
            self._connector.connectionFailed(Failure(reason))


class Connector(base.BaseConnector):
    """`connectTCP`'s IConnector: the host connects, resolving the name and
    checking it against the operator's `connect=` rules."""

    def __init__(self, host, port, factory, timeout, reactor):
        super().__init__(factory, None, reactor)
        self.host, self.port, self.connect_timeout = host, port, timeout

    def _makeTransport(self):
        host = str(self.host).replace(":", "\\:")
        description = f"tcp:host={host}:port={self.port}"
        if self.connect_timeout:
            description += f":timeout={self.connect_timeout}"
        token = self.reactor._token()
        pending = _PendingConnect(self, token)
        self.reactor._connects[token] = self
        try:
            _host.connect(description, token)
        except Err as refused:
            # Twisted reports even an immediate failure later, to the factory.
            self.reactor.callLater(0, pending.failIfNotConnected, connect_error(refused.value))
        return pending

    def getDestination(self):
        return IPv4Address("TCP", self.host, self.port)


def connect_error(reason):
    """The Twisted exception for a `weft:protocol/types.connect-error`."""
    if reason == ConnectError.INVALID_ENDPOINT:
        return error.ConnectError(string="not a destination weft understands")
    if reason == ConnectError.LIMIT:
        return error.ConnectError(string="too many outbound connections (the operator's max-outbound limit)")
    if reason == ConnectError.DENIED:
        return error.ConnectError(string="denied by the operator's connect= rules")
    if reason == ConnectError.NOT_RESOLVABLE:
        return error.DNSLookupError()
    if reason == ConnectError.REFUSED:
        return error.ConnectionRefusedError()
    if reason == ConnectError.TIMED_OUT:
        return error.TimeoutError()
    return error.ConnectError()


@implementer(interfaces.IHostnameResolver)
class _HostResolves:
    """Names are resolved by the host when it connects (and checked against
    `connect=` there): `HostnameEndpoint` is handed the name itself."""

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
        receiver.resolutionBegan(None)
        receiver.addressResolved(IPv4Address("TCP", hostName, portNumber))
        receiver.resolutionComplete()
        return receiver


@implementer(
    interfaces.IReactorTCP,
    interfaces.IReactorSSL,
    interfaces.IReactorUNIX,
    interfaces.IReactorUDP,
    interfaces.IReactorPluggableNameResolver,
)
class WeftReactor(base.ReactorBase):
    """The reactor of a program in a weft component."""

    def __init__(self):
        super().__init__()
        self.listens = []
        self._ports = []
        self._connects = {}
        self._next_token = 0
        self._timer = None
        self._timer_due = None
        self._timer_token = None
        self.installNameResolver(_HostResolves())

    # The host runs the loop and owns every descriptor.

    def _initThreads(self):
        pass

    def installWaker(self):
        pass

    def wakeUp(self):
        pass

    def doIteration(self, delay):
        pass

    def run(self, installSignalHandlers=True):
        """At build time the program's listens are recorded: the host runs
        the loop once the component is served."""

    def stop(self):
        """A guest cannot stop its service; the operator can."""
        from weft import log

        log.warn("reactor.stop(): a weft guest cannot stop its service; the call does nothing")

    def crash(self):
        """Part of Twisted's shutdown: the instance is stopping anyway."""
        self.running = False

    def start(self, listen=None):
        """The instance started: start the factory it serves (each
        listened one if which is not known yet), then fire Twisted's
        startup triggers (`callWhenRunning`)."""
        for port in self._ports:
            if listen is None or port._listen is listen:
                port.start_factory()
        if not self._started:
            self.startRunning(installSignalHandlers=False)
        self.arm()

    def shutdown(self):
        """The instance stops: Twisted's shutdown triggers, which stop the
        factories (`disconnectAll`)."""
        if self._started:
            self._started = False
            self.fireSystemEvent("shutdown")

    def disconnectAll(self):
        for port in self._ports:
            port.stopListening()

    # Descriptors are the host's.

    def addReader(self, reader):
        raise NotImplementedError("weft's host owns every socket: a guest cannot add a reader")

    addWriter = addReader
    removeReader = removeWriter = addReader

    def removeAll(self):
        return []

    def getReaders(self):
        return []

    def getWriters(self):
        return []

    # Time: Twisted's own queue of DelayedCalls, with one host timer due at
    # the earliest.

    def arm(self):
        """Keep the host timer due when the earliest call is; the SDK calls
        this as each call into the guest ends."""
        if self._newTimedCalls:
            self._insertNewDelayedCalls()
        if self._cancellations > 50 and self._cancellations > len(self._pendingTimedCalls) >> 1:
            # What Twisted's loop does on each turn (runUntilCurrent): drop
            # cancelled calls, which twisted.web makes one of per request.
            self._cancellations = 0
            self._pendingTimedCalls = [call for call in self._pendingTimedCalls if not call.cancelled]
            heapq.heapify(self._pendingTimedCalls)
        pending = self._pendingTimedCalls
        due = pending[0].time if pending else None
        if due == self._timer_due:
            return
        self._timer_due = due
        if due is None:
            if self._timer is not None:
                self._timer.cancel()
            return
        delay = max(0, int((due - self.seconds()) * 1_000_000_000))
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
            return
        self._timer_token = self._token()
        try:
            self._timer = _host.call_later(delay, self._timer_token)
        except Err:
            raise RuntimeError("the operator's timers limit was reached") from None

    def timer_fired(self, token):
        if token == self._timer_token:
            self._timer_due = None
            self.runUntilCurrent()

    def _token(self):
        self._next_token += 1
        return self._next_token

    # Listening: the host listens where the operator says.

    def _listen(self, kind, where, served, address, make=None):
        listen = Listen(kind, where, served, make)
        self.listens.append(listen)
        port = Port(listen, address)
        self._ports.append(port)
        if self.running:
            port.start_factory()
        return port

    def listen_defined(self, make):
        """Serve the factory `make()` returns, made once the component is
        served: a guest of weft's earlier look-alike API defines its
        factory without listening."""
        return self._listen("tcp", 0, None, IPv4Address("TCP", "0.0.0.0", 0), make)

    def listenTCP(self, port, factory, backlog=50, interface=""):
        kind = IPv6Address if ":" in interface else IPv4Address
        return self._listen("tcp", port, factory, kind("TCP", interface or "0.0.0.0", port))

    def listenSSL(self, port, factory, contextFactory=None, backlog=50, interface=""):
        kind = IPv6Address if ":" in interface else IPv4Address
        return self._listen("ssl", port, factory, kind("TCP", interface or "0.0.0.0", port))

    def listenUNIX(self, address, factory, backlog=50, mode=0o666, wantPID=0):
        return self._listen("unix", address, factory, UNIXAddress(address))

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        from weft._datagram import Port as DatagramPort

        self._listen("udp", port, protocol, IPv4Address("UDP", interface or "0.0.0.0", port))
        return DatagramPort(protocol)

    # Connecting: through the host.

    def connectTCP(self, host, port, factory, timeout=30, bindAddress=None):
        if _host is None:
            raise NotImplementedError("a datagram (listenUDP) guest cannot connect out in this weft")
        connector = Connector(host, port, factory, timeout, self)
        connector.connect()
        return connector

    def connectSSL(self, host, port, factory, contextFactory, timeout=30, bindAddress=None):
        raise NotImplementedError("weft connects a guest out over TCP only, not TLS")

    def connectUNIX(self, address, factory, timeout=30, checkPID=0):
        raise NotImplementedError("weft connects a guest out over TCP only, not to Unix sockets")

    def connected(self, token):
        """The host connected the connect of `token`: its connector, or
        None if nothing waits for it any more."""
        return self._connects.pop(token, None)

    def connect_failed(self, token, reason):
        connector = self._connects.pop(token, None)
        if connector is not None:
            connector.connectionFailed(Failure(connect_error(reason)))

    # Refused in the sandbox, saying why.

    def callInThread(self, f, *args, **kwargs):
        raise NotImplementedError(NO_THREADS)

    def getThreadPool(self):
        raise NotImplementedError(NO_THREADS)

    def suggestThreadPoolSize(self, size):
        pass

    def callFromThread(self, f, *args, **kwargs):
        """There is one thread: called from the reactor, soon."""
        self.callLater(0, f, *args, **kwargs)

    def spawnProcess(self, *args, **kwargs):
        raise NotImplementedError(NO_PROCESSES)


_reactor = None


def install():
    """Install the weft reactor as `twisted.internet.reactor`."""
    global _reactor
    from twisted.internet.main import installReactor

    if "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("a Twisted reactor was installed before weft's")
    _reactor = WeftReactor()
    installReactor(_reactor)
    return _reactor


def reactor():
    return _reactor
