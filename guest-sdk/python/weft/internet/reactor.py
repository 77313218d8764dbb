"""The reactor's services for a guest (twisted.internet.reactor): the host
runs the reactor, so `callLater` schedules on the host, `connectTCP`
connects through it, `listenUDP` names the datagram protocol to serve,
and `run`/`stop` are not needed."""

import time

from weft import log
from weft.internet import error
from weft.python.failure import Failure
from wit_world.imports.types import ConnectError

try:
    from wit_world.imports import reactor as _host
except ImportError:
    # A datagram guest's world has no timers or outbound connections.
    _host = None
from componentize_py_types import Err

# What the guest waits for, by the token the host will answer with.
_timers = {}
_connects = {}
_next_token = 0


def _token():
    global _next_token
    _next_token += 1
    return _next_token


def _nanos(seconds):
    return max(0, int(seconds * 1_000_000_000))


def seconds():
    """The reactor's clock, in seconds (monotonic)."""
    return time.monotonic()


class DelayedCall:
    """A call scheduled by `callLater` (twisted.internet.base.DelayedCall)."""

    def __init__(self, handle, token, time):
        self._handle = handle
        self._token = token
        self.time = time
        self.cancelled = 0
        self.called = 0

    def getTime(self):
        """When the call is due, on `reactor.seconds()`'s clock."""
        return self.time

    def cancel(self):
        if self.cancelled:
            raise error.AlreadyCancelled()
        if self.called:
            raise error.AlreadyCalled()
        self.cancelled = 1
        self._handle.cancel()
        _timers.pop(self._token, None)

    def reset(self, secondsFromNow):
        self._check()
        self.time = seconds() + secondsFromNow
        self._handle.reset(_nanos(secondsFromNow))

    def delay(self, secondsLater):
        self._check()
        self.time += secondsLater
        self._handle.delay(_nanos(secondsLater))

    def active(self):
        return not (self.cancelled or self.called)

    def _check(self):
        if self.cancelled:
            raise error.AlreadyCancelled()
        if self.called:
            raise error.AlreadyCalled()

    def __repr__(self):
        return f"<DelayedCall {self._token} due at {self.time:.3f}>"


def callLater(delay, f, *args, **kwargs):
    """Call `f(*args, **kwargs)` in `delay` seconds; returns a DelayedCall.
    Raises RuntimeError when the instance has as many calls scheduled as
    the operator allows."""
    _needs_services("callLater")
    token = _token()
    try:
        handle = _host.call_later(_nanos(delay), token)
    except Err:
        raise RuntimeError("too many scheduled calls: the operator's timers limit") from None
    call = DelayedCall(handle, token, seconds() + delay)
    _timers[token] = (call, f, args, kwargs)
    return call


def _needs_services(what):
    if _host is None:
        raise NotImplementedError(
            f"{what}: a datagram (listenUDP) guest has no timers or outbound "
            "connections in this weft"
        )


def _fire(token):
    """The host says the call scheduled with `token` is due."""
    entry = _timers.pop(token, None)
    if entry is None:
        return
    call, f, args, kwargs = entry
    call.called = 1
    try:
        f(*args, **kwargs)
    except Exception as raised:
        log.error(f"Unhandled Error in a delayed call: {raised!r}")


_CONNECT_ERRORS = {
    ConnectError.INVALID_ENDPOINT: lambda: ValueError("not a client endpoint weft understands"),
    ConnectError.LIMIT: lambda: error.ConnectError(string="too many outbound connections (the operator's max-outbound limit)"),
    ConnectError.DENIED: lambda: error.ConnectError(string="denied by the operator's connect= policy"),
    ConnectError.NOT_RESOLVABLE: lambda: error.DNSLookupError(),
    ConnectError.REFUSED: lambda: error.ConnectionRefusedError(),
    ConnectError.TIMED_OUT: lambda: error.TimeoutError(),
    ConnectError.FAILED: lambda: error.ConnectError(),
}


def _connect(description, made, failed):
    """Ask the host to connect; `made(host_transport)` or
    `failed(Failure)` is called later. Raises at once when the description
    does not parse or the instance is at its limit."""
    _needs_services("connectTCP")
    token = _token()
    try:
        _host.connect(description, token)
    except Err as refused:
        raise _CONNECT_ERRORS[refused.value]() from None
    _connects[token] = (made, failed)


def _connected(token, host_transport):
    """The connection asked for with `token` is made: the protocol built
    for it, or None if nothing waits for it any more."""
    made, _ = _connects.pop(token, (None, None))
    return None if made is None else made(host_transport)


def _connect_failed(token, reason):
    _, failed = _connects.pop(token, (None, None))
    if failed is not None:
        failed(Failure(_CONNECT_ERRORS[reason]()))


def connectTCP(host, port, factory, timeout=30, bindAddress=None):
    """Connect to `host`:`port` with a ClientFactory (Twisted's
    reactor.connectTCP); the factory hears of success or failure."""
    from weft.internet import endpoints

    endpoint = endpoints.TCP4ClientEndpoint(None, host, port, timeout=timeout)
    # The factory hears the outcome; nobody waits on the Deferred.
    endpoint._connect(factory).addErrback(lambda failure: None)


def listenUDP(port, protocol, interface="", maxPacketSize=8192):
    """Serve `protocol`, a DatagramProtocol, on the service's UDP socket
    (Twisted's reactor.listenUDP). The operator's `udp:` endpoint says
    where it listens, and its `max-datagram` limit how long a datagram may
    be: `port`, `interface` and `maxPacketSize` are Twisted's, kept so that
    the program reads the same."""
    from weft import _served

    return _served.listen_udp(protocol)


def run():
    """The host runs the reactor: nothing to do."""


def stop():
    """The host runs the reactor: a guest cannot stop it."""
