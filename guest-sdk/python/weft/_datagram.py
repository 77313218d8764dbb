"""A datagram service's socket as its Twisted protocol sees it
(twisted.internet.udp.Port): `write(datagram, addr)` and `getHost()`."""

from twisted.internet import error, interfaces
from twisted.internet.address import IPv4Address, IPv6Address
from zope.interface import implementer

from componentize_py_types import Err
from wit_world.imports.types import Address, AddressFamily

# Host addresses of recent peers, by Twisted's (host, port): a reply goes to
# the sender it answers, so building the record once per peer, not once per
# datagram, saves the interpreter's time on the hot path.
_ADDRESSES_KEPT = 1024
_addresses = {}


def _host():
    # Only a datagram guest's world has this interface: imported on use.
    from wit_world.imports import datagram_transport

    return datagram_transport


def _address(addr):
    """The host's address record for Twisted's (host, port) `addr`."""
    kept = type(addr) is tuple
    found = _addresses.get(addr) if kept else None
    if found is None:
        host, port = addr
        family = AddressFamily.IPV6 if ":" in host else AddressFamily.IPV4
        found = Address(family, host, port)
        if kept:
            if len(_addresses) >= _ADDRESSES_KEPT:
                _addresses.clear()
            _addresses[addr] = found
    return found


@implementer(interfaces.IUDPTransport, interfaces.IListeningPort)
class Port:
    """The service's UDP socket; weft's host owns it."""

    def __init__(self, protocol):
        self.protocol = protocol
        # The host's `write`, found at the first datagram: the port is made
        # at build time, before the host is there.
        self._send = None

    def write(self, datagram, addr=None):
        """Send `datagram` to `addr`, a (host, port) tuple with a numeric
        host. A datagram the host could not send (past the rate, a full
        buffer) is dropped, as the network may drop any; one that is too
        long or has a bad address raises, as in Twisted; one to an address
        the guest may not send to raises PermissionError."""
        if addr is None:
            raise error.NotConnectedError("weft's UDP ports are not connected: give write() an address")
        send = self._send
        if send is None:
            send = self._send = _host().write
        try:
            send(datagram if type(datagram) is bytes else bytes(datagram), _address(addr))
        except Err as refused:
            host_module = _host()
            why = refused.value
            if why == host_module.SendError.TOO_LARGE:
                raise error.MessageLengthError("message too long") from None
            if why == host_module.SendError.INVALID_ADDRESS:
                raise error.InvalidAddressError(addr[0], "not a numeric address of this socket's family") from None
            if why == host_module.SendError.DENIED:
                raise PermissionError(
                    f"weft does not allow sending to {addr!r}: only to recent senders "
                    "and where the operator's connect= rules allow"
                ) from None

    def writeSequence(self, seq, addr):
        self.write(b"".join(seq), addr)

    def getHost(self):
        bound = _host().get_host()
        kind = IPv4Address if bound.family == AddressFamily.IPV4 else IPv6Address
        return kind("UDP", bound.host, bound.port)

    def startListening(self):
        """The host listens where the operator says."""

    def stopListening(self):
        self.protocol.doStop()

    loseConnection = stopListening

    def connect(self, host, port):
        raise NotImplementedError("weft's UDP ports are not connected")

    def logPrefix(self):
        return "UDP"
