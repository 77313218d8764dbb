"""Why a connection ended, as Twisted names it (twisted.internet.error)."""


class ConnectionDone(Exception):
    """The connection was closed cleanly."""

    def __str__(self):
        return "Connection was closed cleanly."


class ConnectionLost(Exception):
    """The connection was lost in a non-clean fashion."""

    def __str__(self):
        return "Connection to the other side was lost in a non-clean fashion."


class ConnectionAborted(ConnectionLost):
    """The connection was aborted by this side."""

    def __str__(self):
        return "Connection was aborted locally."


class ConnectError(Exception):
    """An error occurred while connecting."""

    def __init__(self, osError=None, string=""):
        self.osError = osError
        Exception.__init__(self, string)

    def __str__(self):
        message = self.__doc__.strip().rstrip(".") if self.__doc__ else "Connection error"
        if self.args and self.args[0]:
            message = f"{message}: {self.args[0]}"
        return f"{message}."


class DNSLookupError(ConnectError):
    """DNS lookup failed."""


class ConnectionRefusedError(ConnectError):
    """Connection was refused by other side."""


class TimeoutError(ConnectError):
    """User timeout caused connection failure."""


class AlreadyCalled(ValueError):
    """Tried to cancel an already-called event."""


class AlreadyCancelled(ValueError):
    """Tried to cancel an already-cancelled event."""


class MessageLengthError(Exception):
    """A datagram was longer than the operator's max-datagram limit."""

    def __str__(self):
        return "Message is too long to send"


class InvalidAddressError(ValueError):
    """A datagram's address is not a numeric address of the socket's
    family (names are not resolved)."""

    def __init__(self, address, message):
        self.address, self.message = address, message

    def __str__(self):
        return f"Invalid address {self.address}: {self.message}"
