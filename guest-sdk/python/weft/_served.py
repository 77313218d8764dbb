"""The glue between weft's exports and the Twisted program: which of the
program's listens a connection is for, one host connection and the
protocol its factory builds, the instance's start, stop, timers and
subscriptions, and the host's word for the guest's own producers."""

import time
import traceback

from twisted.internet import error
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.python.failure import Failure

from weft import _reactor, _sandbox, _stdout, log
from weft._transport import Transport, address, flush_all, watched

_REASONS = (error.ConnectionDone, error.ConnectionLost, error.ConnectionAborted)

# Input longer than this is given to the protocol a slice at a time, and a
# call stops giving once it has run for BUDGET seconds: the rest waits for
# later calls, with the connection's reading paused. A client pipelining
# thousands of requests in one read cannot hold the instance past its
# deadline (100 ms by default) or hold other connections behind it long.
SLICE = 1024
BUDGET = 0.02

# When the current call into the guest began giving held-back input: the
# budget is the call's, shared by every connection it serves.
_turn_started = 0.0


def begin_turn():
    global _turn_started
    _turn_started = time.monotonic()


def _exception():
    """The exception being handled, for one log line: the exception, then
    its traceback's frames (file names and line numbers)."""
    lines = traceback.format_exc().strip().splitlines()
    return lines[-1], " | ".join(line.strip() for line in lines[1:-1])


def _stream_listens():
    return [listen for listen in _reactor.reactor().listens if listen.kind != "udp"]


def _listen_for(listens, where):
    """The listen at `where` (a port or Unix path), if one is."""
    return next((listen for listen in listens if str(listen.where) == str(where)), None)


def _listen_at_start():
    """The listen this instance serves, if it is known before a connection
    comes: the only one, or the one config.listen names."""
    listens = _stream_listens()
    if len(listens) == 1:
        return listens[0]
    from weft import config

    return _listen_for(listens, config.get("listen"))


def factory_for(host_transport):
    """The factory of the program's listen this connection came to: the
    only one; else the one `config.listen` names (its port or Unix path);
    else the one on the port (or path) the service listens on. None,
    logged, when none is."""
    listens = _stream_listens()
    if len(listens) == 1:
        return listens[0].served
    from weft import config

    named = config.get("listen")
    local = address(host_transport.get_host_address())
    chosen = _listen_for(listens, named or getattr(local, "port", None) or getattr(local, "name", None))
    if chosen is not None:
        return chosen.served
    listed = ", ".join(listen.describe() for listen in listens)
    log.error(
        f"the program listens {len(listens)} times ({listed}) and none is for "
        f"{f'config.listen={named}' if named else local}: set config.listen to one of "
        "their ports, or serve the service on one of them"
    )
    return None


class Connection:
    """A protocol built for one host connection: accepted and built by the
    factory of its listen, or made for `client`, the token of a connect,
    and built by that connector's factory. An exception raised by the
    protocol is logged with its traceback and aborts that connection
    only, as Twisted drops a connection whose protocol raised."""

    def __init__(self, host_transport, client=None):
        self.transport = Transport(host_transport)
        self.transport._resumed = self._resumed
        self.transport._producer_raised = self._producer_raised
        self.protocol = None
        self.connector = None
        # Input read from the peer that the protocol has not been given:
        # `backlog[offset:]`.
        self.backlog = b""
        self._offset = 0
        self._draining = False
        try:
            if client is None:
                factory = factory_for(host_transport)
                protocol = None if factory is None else factory.buildProtocol(self.transport.getPeer())
            else:
                self.connector = _reactor.reactor().connected(client)
                protocol = None
                if self.connector is not None:
                    protocol = self.connector.buildProtocol(self.transport.getPeer())
                    self.connector.transport = self.transport
        except Exception:
            self.failed("buildProtocol")
            return
        if protocol is None:
            self.transport.loseConnection()
            return
        self.protocol = protocol
        self.call("makeConnection", self.transport)

    def call(self, method, *args):
        if self.protocol is None:
            return
        try:
            getattr(self.protocol, method)(*args)
        except Exception:
            self.failed(method)

    def feed(self, data):
        """Give `data` to the protocol a slice at a time, within BUDGET;
        keep what is left for later calls."""
        self.backlog = self.backlog[self._offset :] + data if self.backlog else data
        self._offset = 0
        if not self._draining:
            begin_turn()
            self._drain()

    def _next_slice(self):
        start = self._offset
        self._offset = start + SLICE
        chunk = self.backlog[start : self._offset]
        if self._offset >= len(self.backlog):
            self.backlog, self._offset = b"", 0
        return chunk

    def _drain(self):
        self._draining = False
        transport = self.transport
        while self.backlog and self.protocol is not None and not transport._protocol_paused:
            if time.monotonic() - _turn_started > BUDGET:
                break
            self.call("dataReceived", self._next_slice())
        # Hold the peer back while input waits, and come back for it.
        waiting = bool(self.backlog) and self.protocol is not None
        if transport._sdk_paused != waiting:
            transport._sdk_paused = waiting
            transport._mark()
        if waiting and not transport._protocol_paused:
            self._draining = True
            _reactor.reactor().callLater(0, self._drain)

    def _resumed(self):
        """The protocol resumed reading: give it the input held back."""
        if self.backlog and not self._draining:
            self._draining = True
            _reactor.reactor().callLater(0, self._drain)

    def read_connection_lost(self):
        # Input held back comes first, however long it takes: the peer
        # sent nothing after it.
        while self.backlog and self.protocol is not None:
            self.call("dataReceived", self._next_slice())
        if self.protocol is None:
            return
        if IHalfCloseableProtocol.providedBy(self.protocol):
            self.call("readConnectionLost")
        else:
            self.transport.loseConnection()

    def lost(self, reason):
        # The transport first, as Twisted's: it stops the guest's producer.
        try:
            self.transport._lost()
        except Exception:
            raised, frames = _exception()
            log.error(f"stopProducing raised {raised} ({frames})")
        failure = Failure(_REASONS[reason]())
        self.call("connectionLost", failure)
        self.protocol = None
        if self.connector is not None:
            self.connector.connectionLost(failure)
            self.connector = None

    def _producer_raised(self, method):
        """The guest's own producer raised in `method`: Twisted drops the
        connection (its protocol still hears connectionLost)."""
        raised, frames = _exception()
        log.error(f"the producer's {method} raised {raised}; aborting its connection ({frames})")
        self.transport.abortConnection()

    def failed(self, method):
        raised, frames = _exception()
        log.error(f"{method} raised {raised}; aborting its connection ({frames})")
        self.protocol = None
        self.transport.abortConnection()


def _after():
    """What every call into the guest ends with: output to the host, and
    the host timer due at Twisted's earliest timed call."""
    flush_all()
    _reactor.reactor().arm()


def begin_serving(timed=True):
    """The first call into the component: the program was built, and now
    serves (its log goes to the host, files are refused saying why, and
    stdout is held a moment, flushed by a reactor timer if `timed`)."""
    if not log.serving:
        log.serving = True
        _sandbox.serving()
        _stdout.hold(timed)


class Events:
    """The `weft:protocol/events` export: the instance's start and stop,
    and the reactor's answers (timers due, connections that failed)."""

    def start(self):
        begin_serving()
        _reactor.reactor().start(_listen_at_start())
        _after()

    def stop(self):
        _reactor.reactor().shutdown()
        flush_all()
        _stdout.flush()

    def timer_fired(self, token):
        begin_turn()
        _reactor.reactor().timer_fired(token)
        _after()

    def connect_failed(self, token, reason):
        _reactor.reactor().connect_failed(token, reason)
        _after()


class Producers:
    """The `weft:protocol/producers` export: a connection's unsent output
    reached the operator's write buffer, or drained below half of it, for
    the guest's own producer registered on its transport (pausing and
    resuming it, as Twisted's FileDescriptor does)."""

    def pause_producing(self, token):
        transport = watched(token)
        if transport is not None:
            transport._full()
        _after()

    def resume_producing(self, token):
        transport = watched(token)
        if transport is not None:
            transport._drained()
        _after()


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

        try:
            messaging._tell(topic, method, *args)
        except Exception:
            raised, frames = _exception()
            log.error(f"{method} for topic {topic} raised {raised} ({frames})")
        _after()


class DatagramHandler:
    """The `weft:protocol/datagram-handler` export: the datagrams of the
    service's socket, for the protocol given to reactor.listenUDP. An
    exception it raises is logged and the next datagram served, as
    Twisted's reactor does."""

    # The protocol given to listenUDP, found once rather than per datagram.
    _listened = None

    def start_protocol(self):
        from weft._datagram import Port

        # A datagram service's world has no timers.
        begin_serving(timed=False)
        protocol = self._protocol()
        self._call(protocol.makeConnection, Port(protocol))

    def datagram_received(self, data, sender):
        # The hot path, so _call's work inline.
        protocol = self._listened or self._protocol()
        try:
            protocol.datagramReceived(data, (sender.host, sender.port))
        except Exception:
            raised, frames = _exception()
            log.error(f"datagramReceived raised {raised} ({frames})")
        _stdout.flush_if_due()

    def stop_protocol(self):
        self._call(self._protocol().doStop)
        _stdout.flush()

    @classmethod
    def _protocol(cls):
        if cls._listened is None:
            cls._listened = next(listen.served for listen in _reactor.reactor().listens if listen.kind == "udp")
        return cls._listened

    @staticmethod
    def _call(method, *args):
        try:
            method(*args)
        except Exception:
            raised, frames = _exception()
            log.error(f"{method.__name__} raised {raised} ({frames})")
