"""What the sandbox refuses a guest: sockets of its own. Python's `socket`
module loads (libraries import it), but the host grants no socket, and
every use failed with an error that said nothing useful (an `idna` codec
missing, `[Errno 2] Permission denied`). Each use now fails saying so, and
what to do instead."""

import errno
import socket

REFUSED = (
    "weft's sandbox grants a guest no sockets: connect through the reactor, "
    "reactor.connectTCP(host, port, factory) or "
    "endpoints.clientFromString(reactor, 'tcp:HOST:PORT').connect(factory), "
    "to a destination the service's connect= rules allow"
)


def _refuse(*args, **kwargs):
    raise PermissionError(errno.EACCES, REFUSED)


class _Socket(socket.socket):
    """`socket.socket`, which cannot be made here."""

    def __init__(self, *args, **kwargs):
        _refuse()


# Everything in `socket` that would make a socket or look a name up.
for _name in (
    "create_connection",
    "create_server",
    "socketpair",
    "fromfd",
    "getaddrinfo",
    "getnameinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
):
    if hasattr(socket, _name):
        setattr(socket, _name, _refuse)
socket.socket = socket.SocketType = _Socket
