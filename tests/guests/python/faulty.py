# A Python guest whose protocol misbehaves on command: `raise` raises in
# dataReceived; `socket`, `connect` and `resolve` try the network through
# Python's own `socket` module and write back what it raised; anything
# else is echoed. Written for the `weft.internet` look-alike of earlier
# releases, which now reaches Twisted's own modules: it keeps that working.
import socket

from weft.internet import protocol


def attempt(command):
    """Try the socket use `command` names; what it raised, as a line."""
    try:
        if command == b"socket":
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        elif command == b"connect":
            socket.create_connection(("127.0.0.1", 9))
        else:
            socket.getaddrinfo("localhost", 80)
    except Exception as error:
        return f"{type(error).__name__}: {error}\r\n".encode()
    return b"it worked\r\n"


class Faulty(protocol.Protocol):
    def dataReceived(self, data):
        command = data.strip()
        if command == b"raise":
            raise ZeroDivisionError("asked to raise")
        if command in (b"socket", b"connect", b"resolve"):
            self.transport.write(attempt(command))
            return
        self.transport.write(data)


class FaultyFactory(protocol.Factory):
    protocol = Faulty
