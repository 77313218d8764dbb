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
