"""Client endpoints (twisted.internet.endpoints): `clientFromString(reactor,
"tcp:host=...:port=...").connect(factory)` returns a Deferred that fires
with the protocol once the host has connected."""

from weft.internet import defer, reactor as _reactor
from weft.internet.address import address
from weft.python.failure import Failure


class TCP4ClientEndpoint:
    """A TCP destination; the host resolves the name and checks it against
    the operator's `connect=` rules."""

    _kind = "tcp"

    def __init__(self, reactor, host, port, timeout=30, bindAddress=None):
        self._host, self._port, self._timeout = host, port, timeout

    def _description(self):
        host = str(self._host).replace(":", "\\:")
        return f"{self._kind}:host={host}:port={self._port}:timeout={self._timeout}"

    def connect(self, protocolFactory):
        """Connect, building the protocol with `protocolFactory`; the
        Deferred fires with it, or fails with why there is none."""
        return self._connect(protocolFactory)

    def _connect(self, factory):
        d = defer.Deferred()

        def made(host_transport):
            # The Deferred fires after connectionMade, as Twisted's does.
            protocol = factory.buildProtocol(address(host_transport.get_peer_address()))
            if protocol is None:
                d.errback(Exception("the factory built no protocol"))
                return None
            return protocol, d.callback

        def failed(failure):
            if hasattr(factory, "clientConnectionFailed"):
                factory.clientConnectionFailed(None, failure)
            d.errback(failure)

        if hasattr(factory, "startedConnecting"):
            factory.startedConnecting(None)
        try:
            _reactor._connect(self._description(), made, failed)
        except Exception as error:
            failed(Failure(error))
        return d


class TCP6ClientEndpoint(TCP4ClientEndpoint):
    """A TCP destination over IPv6."""

    _kind = "tcp6"


class HostnameEndpoint(TCP4ClientEndpoint):
    """A name to resolve and connect to."""


def clientFromString(reactor, description):
    """The client endpoint a Twisted description names: `tcp:HOST:PORT`,
    `tcp:host=HOST:port=PORT[:timeout=SECONDS]`, `tcp6:...`."""
    kind, _, rest = description.partition(":")
    kind = kind.lower()
    if kind not in ("tcp", "tcp6"):
        raise ValueError(f"unknown endpoint type: {kind!r}")
    args, kwargs = _parse(rest)
    names = ["host", "port", "timeout"]
    for name, value in zip(names, args):
        kwargs.setdefault(name, value)
    if "host" not in kwargs or "port" not in kwargs:
        raise TypeError(f"{description!r} needs a host and a port")
    endpoint = TCP6ClientEndpoint if kind == "tcp6" else TCP4ClientEndpoint
    return endpoint(reactor, kwargs["host"], int(kwargs["port"]), timeout=float(kwargs.get("timeout", 30)))


def _parse(text):
    """Twisted's tokenizer: `:` separates, `\\` escapes, `key=value`."""
    args, kwargs, current, key = [], {}, "", None
    chars = iter(text)
    for c in chars:
        if c == "\\":
            current += next(chars, "")
        elif c == ":":
            (kwargs.__setitem__(key, current) if key is not None else args.append(current))
            current, key = "", None
        elif c == "=" and key is None:
            key, current = current, ""
        else:
            current += c
    if key is not None:
        kwargs[key] = current
    elif current or args:
        args.append(current)
    return args, kwargs
