"""What a guest module serves, found among the classes it defines, and the
glue between one host connection and the protocol its factory builds."""

import sys
import traceback

from weft import log
from weft.internet import reactor
from weft.internet.address import address
from weft.internet.transport import Transport, flush_all

_defined = {"factory": [], "resource": [], "datagram": []}
_served = None
# The DatagramProtocol instances passed to reactor.listenUDP.
_listened_udp = []


def defined(kind, cls):
    """Note a `Factory`, `Resource` or `DatagramProtocol` subclass defined
    outside the SDK, and give its module the `Events` and `Subscriber`
    exports (a datagram protocol's the `DatagramHandler` one).
    componentize-py looks for the class implementing an exported interface
    of free functions in the guest's own module; putting it there keeps
    guests free of glue."""
    if not cls.__module__.startswith("weft."):
        _defined[kind].append(cls)
        module = sys.modules.get(cls.__module__)
        exports = [DatagramHandler] if kind == "datagram" else [Events, Subscriber]
        for export in exports:
            if module is not None and not hasattr(module, export.__name__):
                setattr(module, export.__name__, export)


def listen_udp(protocol):
    """reactor.listenUDP: serve `protocol` on the service's UDP socket."""
    from weft.internet.udp import Port

    _listened_udp.append(protocol)
    return Port()


class DatagramHandler:
    """The `weft:protocol/datagram-handler` export: the datagrams of the
    service's socket, for the protocol given to reactor.listenUDP. An
    exception it raises is logged and the next datagram served, as
    Twisted's reactor does."""

    def start_protocol(self):
        from weft.internet.udp import Port

        self._call("makeConnection", Port())

    def datagram_received(self, data, sender):
        self._call("datagramReceived", data, (sender.host, sender.port))

    def stop_protocol(self):
        self._call("doStop")

    def _call(self, method, *args):
        try:
            getattr(_listened_udp[0], method)(*args)
        except Exception:
            raised, frames = _exception()
            log.error(f"{method} raised {raised} ({frames})")


def _exception():
    """The exception being handled, for one log line: the exception, then
    its traceback's frames."""
    lines = traceback.format_exc().strip().splitlines()
    return lines[-1], " | ".join(line.strip() for line in lines[1:-1])


class Events:
    """The `weft:protocol/events` export: the instance's start and stop,
    and the reactor's answers (timers due, connections that failed)."""

    def start(self):
        factory = served()
        if hasattr(factory, "doStart"):
            factory.doStart()
        flush_all()

    def stop(self):
        factory = served()
        if hasattr(factory, "doStop"):
            factory.doStop()
        flush_all()

    def timer_fired(self, token):
        reactor._fire(token)
        flush_all()

    def connect_failed(self, token, reason):
        reactor._connect_failed(token, reason)
        flush_all()


class Subscriber:
    """The `weft:protocol/subscriber` export: what the instance's
    subscriptions bring, for the subscribers given to
    `weft.messaging.subscribe`. An exception a subscriber raises is logged
    and the next message served, as Twisted's reactor does."""

    def message_received(self, topic, message):
        self._tell(topic, "messageReceived", message)

    def messages_dropped(self, topic, count):
        self._tell(topic, "messagesDropped", count)

    def subscription_interrupted(self, topic):
        self._tell(topic, "subscriptionInterrupted")

    def subscription_resumed(self, topic):
        self._tell(topic, "subscriptionResumed")

    def _tell(self, topic, method, *args):
        from weft import messaging

        served()
        try:
            messaging._tell(topic, method, *args)
        except Exception:
            raised, frames = _exception()
            log.error(f"{method} for topic {topic} raised {raised} ({frames})")
        flush_all()


def served():
    """The factory to serve: the one `Factory` subclass the guest module
    defines, else a `Site` over the one `Resource` subclass it defines,
    which is what the `listen(...)` line of the Twisted program named."""
    global _served
    if _served is None:
        _served = _find()
    return _served


def _find():
    factories, resources = _defined["factory"], _defined["resource"]
    if len(factories) == 1:
        return factories[0]()
    if not factories and len(resources) == 1:
        from weft.web.server import Site

        return Site(resources[0]())
    raise TypeError(
        "a weft guest module defines exactly one Factory subclass, or else "
        f"one Resource subclass; found factories {factories}, resources {resources}"
    )


class Connection:
    """A protocol built for one host connection: accepted, built by the
    served factory, or made for `client`, the token of a connect, built by
    the factory given to it. An exception raised by the protocol is logged
    with its traceback and aborts that connection only, as Twisted drops a
    connection whose protocol raised."""

    def __init__(self, host_transport, client=None):
        self.transport = Transport(host_transport)
        self.protocol = None
        connected = None
        try:
            if client is None:
                protocol = served().buildProtocol(address(host_transport.get_peer_address()))
            else:
                built = reactor._connected(client, host_transport)
                protocol, connected = built if built is not None else (None, None)
        except Exception:
            self.failed("buildProtocol")
            return
        if protocol is None:
            self.transport.loseConnection()
            return
        self.protocol = protocol
        self.call("makeConnection", self.transport)
        if connected is not None:
            connected(protocol)

    def call(self, method, *args):
        if self.protocol is None:
            return
        try:
            getattr(self.protocol, method)(*args)
        except Exception:
            self.failed(method)

    def read_connection_lost(self):
        if self.protocol is None:
            return
        if hasattr(self.protocol, "readConnectionLost"):
            self.call("readConnectionLost")
        else:
            self.transport.loseConnection()

    def lost(self, reason):
        self.transport.connected = False
        self.call("connectionLost", reason)
        self.protocol = None

    def failed(self, method):
        raised, frames = _exception()
        log.error(f"{method} raised {raised}; aborting its connection ({frames})")
        self.protocol = None
        self.transport.abortConnection()
