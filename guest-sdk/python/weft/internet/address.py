"""Addresses as Twisted prints them (twisted.internet.address)."""

from wit_world.imports.types import AddressFamily, SocketAddress_Tcp


class IPv4Address:
    """An IPv4 TCP address; `str()` is Twisted's, which the chat sends."""

    def __init__(self, type, host, port):
        self.type, self.host, self.port = type, host, port

    def __eq__(self, other):
        return (
            type(other) is type(self)
            and (self.type, self.host, self.port) == (other.type, other.host, other.port)
        )

    def __hash__(self):
        return hash((self.type, self.host, self.port))

    def __repr__(self):
        return f"IPv4Address(type={self.type!r}, host={self.host!r}, port={self.port!r})"


class IPv6Address(IPv4Address):
    """An IPv6 TCP address."""

    flowInfo = 0
    scopeID = 0

    def __repr__(self):
        return (
            f"IPv6Address(type={self.type!r}, host={self.host!r}, port={self.port!r}, "
            f"flowInfo=0, scopeID=0)"
        )


class UNIXAddress:
    """A Unix socket's address: its path, or None for a socket with no
    name (a connecting client's, usually)."""

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return type(other) is type(self) and self.name == other.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"UNIXAddress({self.name!r})"


def address(wit_address):
    """The Twisted address of a `weft:protocol/types.socket-address`."""
    if not isinstance(wit_address, SocketAddress_Tcp):
        return UNIXAddress(wit_address.value)
    tcp = wit_address.value
    kind = IPv4Address if tcp.family == AddressFamily.IPV4 else IPv6Address
    return kind("TCP", tcp.host, tcp.port)
