"""The interfaces Twisted's protocols ask their transports about
(twisted.internet.interfaces), as far as weft's transports provide them."""


class ISSLTransport:
    """A transport over TLS: `ISSLTransport.providedBy(self.transport)` is
    true for a connection accepted on an `ssl:` endpoint, whose TLS the
    host terminates."""

    @staticmethod
    def providedBy(transport):
        host = getattr(transport, "_host", None)
        return host is not None and host.is_secure()
