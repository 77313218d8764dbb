"""Site and Request (twisted.web.server) over an HTTP/1.1 channel that
frames requests as Twisted's HTTPChannel does: keep-alive, pipelining,
Content-Length and chunked bodies, HEAD, 405/501 pages and 400 on
malformed input, byte for byte."""

import time

from weft.internet import protocol
from weft.web import http
from weft.web.resource import UnsupportedMethod

version = b"weft/0.1.0"

# Returned by render_* to answer later with request.write and request.finish.
NOT_DONE_YET = http.NOT_DONE_YET

# Methods Twisted answers with 405 when the resource lacks them; others 501.
supportedMethods = (b"GET", b"HEAD", b"POST")


class Request:
    """One request, and the response being made for it."""

    def __init__(self, channel, method, uri, clientproto, headers, content):
        self.channel = channel
        self.transport = channel.transport
        self.method = method
        self.uri = uri
        self.path = uri.split(b"?", 1)[0]
        self.clientproto = clientproto
        self.requestHeaders = headers
        self.content = content
        self.code = 200
        self.responseHeaders = {}
        self.finished = False
        self._written = []
        self._persistent = False
        self._finishedDeferreds = []

    def getHeader(self, name):
        """The first value of request header `name`, any case, or None."""
        wanted = _lower(name)
        for key, value in self.requestHeaders:
            if key.lower() == wanted:
                return value
        return None

    def setHeader(self, name, value):
        """Set response header `name`, keeping the place of an earlier value."""
        name = http.canonical_name(_bytes(name))
        if name is not None:
            self.responseHeaders[name] = http.sanitize_value(_bytes(value))

    def setResponseCode(self, code):
        self.code = code

    def write(self, data):
        """Add to the body of a response rendered NOT_DONE_YET; it is sent,
        with its length, when the request finishes."""
        if not self.finished:
            self._written.append(data)

    def finish(self):
        """Send the response of a request rendered NOT_DONE_YET."""
        if self.finished:
            return
        self.finished = True
        body = b"".join(self._written)
        self.responseHeaders[b"Content-Length"] = str(len(body)).encode()
        self.channel._requestDone(self, body)
        for d in self._finishedDeferreds:
            d.callback(None)

    def notifyFinish(self):
        """A Deferred that fires when the request finishes."""
        from weft.internet import defer

        d = defer.Deferred()
        if self.finished:
            d.callback(None)
        else:
            self._finishedDeferreds.append(d)
        return d

    def getClientAddress(self):
        return self.transport.getPeer()

    def getHost(self):
        return self.transport.getHost()

    def render(self, resource):
        """The response body; sets the headers Twisted sets around it."""
        self.responseHeaders[b"Server"] = version
        self.responseHeaders[b"Date"] = _http_date()
        if self.uri == b"*":
            if self.method != b"OPTIONS":
                self.code = 405
                self.responseHeaders[b"Allow"] = b"OPTIONS"
            self.responseHeaders[b"Content-Length"] = b"0"
            return b"", False
        head_only = self.method == b"HEAD"
        try:
            body = resource.render(self)
        except UnsupportedMethod as refusal:
            body = self._unsupported(refusal.allowedMethods)
        if body is NOT_DONE_YET:
            return body, head_only
        if not head_only or body:
            self.responseHeaders[b"Content-Length"] = str(len(body)).encode()
        return body, head_only

    def _unsupported(self, allowed):
        method = self.method.decode("utf-8", "replace")
        if self.method in supportedMethods:
            self.responseHeaders[b"Allow"] = b", ".join(allowed)
            plural = "s" if len(allowed) > 1 else ""
            detail = (
                f"Your browser approached me (at {http.escape(self.uri.decode('utf-8', 'replace'))})"
                f' with the method "{method}".  I only allow the method{plural} '
                f"{', '.join(a.decode() for a in allowed)} here."
            )
            self.code = 405
            page = http.error_page(405, "Method Not Allowed", detail)
        else:
            detail = f"I don't know how to treat a {http.escape(method)} request."
            self.code = 501
            page = http.error_page(501, "Huh?", detail)
        self.responseHeaders[b"Content-Type"] = b"text/html; charset=utf-8"
        return page


class Site(protocol.Factory):
    """Serves one resource over HTTP; each connection gets a channel."""

    max_content_length = http.DEFAULT_MAX_CONTENT_LENGTH
    # What a channel makes of each request, as in Twisted.
    requestFactory = Request

    def __init__(self, resource):
        self.resource = resource

    def buildProtocol(self, addr):
        channel = http.HTTPChannel(self)
        channel.factory = self
        return channel


def _bytes(text):
    return text if isinstance(text, bytes) else str(text).encode("utf-8")


def _lower(name):
    return _bytes(name).lower()


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date = [None, b""]


def _http_date():
    """The `Date` header value, cached for the second."""
    now = int(time.time())
    if _date[0] != now:
        t = time.gmtime(now)
        _date[0] = now
        _date[1] = (
            f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
        ).encode()
    return _date[1]
