"""HTTP/1.1 for weft's Site: requests framed and refused under the rules of
Twisted's HTTPChannel, responses written as twisted.web writes them."""

import time

from weft.internet import protocol, reactor
from weft.protocols.basic import CALL_BUDGET

MAX_LINE_LENGTH = 16384
# Bytes of request line and headers one request may have.
MAX_HEADERS_SIZE = 16384
MAX_HEADERS = 500
# Request bodies above this get 413 (Twisted has no limit; a guest has a
# memory cap).
DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024
MAX_CHUNK_SIZE_LINE = 1024
MAX_TRAILER_SIZE = 1 << 16

# The longest head taken whole: within both limits, so that it needs no
# per-line checks.
_WHOLE_HEAD = min(MAX_HEADERS_SIZE, MAX_LINE_LENGTH)

# Requests answered between looks at the clock.
_REQUESTS_PER_CLOCK_READ = 16

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 413 Request Entity Too Large\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# The bytes each part of a request may hold. `data.translate(None, allowed)`
# deletes the allowed ones in C, so whatever it leaves is refused: the check
# runs on every byte of every request, too often for a loop in Python.
_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# A request target is visible ASCII (RFC 9112); Twisted also takes bytes
# 0x7F-0xB0, which the Rust SDK's parser (httparse) refuses: both SDKs refuse.
_URI = bytes(range(0x21, 0x7F))
_VALUE = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_HEX = b"0123456789abcdefABCDEF"
_EXTENSION = b"\t" + bytes(b for b in range(0x20, 0x7F) if b != 0x5C) + bytes(range(0x80, 0x100))


class Malformed(Exception):
    """The request cannot be parsed: 400."""


class TooLarge(Exception):
    """The request body is over the site's limit: 413."""


# What a resource's render returns to answer later, with request.write and
# request.finish (twisted.web.server.NOT_DONE_YET).
NOT_DONE_YET = 1


class HTTPChannel(protocol.Protocol):
    """One HTTP connection: parses requests as they arrive, answers each in
    order through the site's resource, and closes when HTTP says so."""

    def __init__(self, site):
        self.site = site
        self._buffer = bytearray()
        self._searched = 0
        self._closing = False
        self._out = []
        self._head_lines = []
        self._head_size = 0
        self._ate_empty_line = False
        self._body = None  # (request fields, decoder, persistent) while reading a body
        self._waiting = None  # a request rendered NOT_DONE_YET, until it finishes
        self._backlogged = False  # out of time with requests left, peer paused
        self._started = 0.0
        self._handled = 0

    def dataReceived(self, data):
        """Answer requests in order until the buffer runs out, the
        connection closes, one is rendered NOT_DONE_YET, or the call's
        budget is spent (the rest then in later calls, the peer paused)."""
        if self._closing:
            return
        wasBacklogged, self._backlogged = self._backlogged, False
        self._started, self._handled = time.monotonic(), 0
        self._buffer += data
        consumed = self._process()
        del self._buffer[:consumed]
        self._searched = max(self._searched - consumed, 0)
        self._send()
        if self._backlogged:
            if not wasBacklogged:
                self.transport.pauseProducing()
            reactor.callLater(0, self._carryOn)
        elif wasBacklogged and self._waiting is None:
            self.transport.resumeProducing()

    def _carryOn(self):
        if self.transport.connected:
            self.dataReceived(b"")

    def _process(self):
        pos = 0
        buffer = self._buffer
        while not self._closing:
            if self._waiting is not None:
                # Requests pipelined behind an unfinished one wait their turn.
                return pos
            if self._handled >= _REQUESTS_PER_CLOCK_READ:
                self._handled = 0
                if time.monotonic() - self._started >= CALL_BUDGET:
                    self._backlogged = True
                    return pos
            if self._body is None:
                if not self._head_lines:
                    # A whole head in the buffer is split in one go (every
                    # line within the limits, as the head is); otherwise
                    # lines are taken one by one as they arrive.
                    end = buffer.find(b"\r\n\r\n", pos)
                    if 0 < end - pos <= _WHOLE_HEAD and buffer[pos] != 13:
                        lines = bytes(buffer[pos:end]).split(b"\r\n")
                        pos = self._searched = end + 4
                        self._whole_head(lines)
                        continue
                end = buffer.find(b"\r\n", max(self._searched, pos))
                if end < 0:
                    if len(buffer) - pos >= MAX_LINE_LENGTH + 2:
                        self._close()
                    else:
                        self._searched = max(len(buffer) - 1, pos)
                    return pos
                start, pos = pos, end + 2
                self._searched = pos
                if end - start > MAX_LINE_LENGTH:
                    self._close()
                    continue
                self._head_line(bytes(buffer[start:end]))
            else:
                fields, decoder, persistent = self._body
                try:
                    used, done = decoder.decode(buffer, pos, fields["content"], self.site.max_content_length)
                except Malformed:
                    self._refuse(BAD_REQUEST)
                    continue
                except TooLarge:
                    self._refuse(TOO_LARGE)
                    continue
                pos += used
                if not done:
                    return pos
                self._body = None
                self._finish(fields, persistent)
        return len(buffer)

    def _whole_head(self, lines):
        if not _is_valid_request_line(lines[0]):
            return self._refuse(BAD_REQUEST)
        return self._head_complete(lines)

    def _head_complete(self, lines):
        try:
            method, uri, version, headers = _parse_head(lines)
        except Malformed:
            return self._refuse(BAD_REQUEST)
        return self._head_received(method, uri, version, headers)

    def _head_line(self, line):
        self._head_size += len(line)
        if self._head_size > MAX_HEADERS_SIZE:
            return self._refuse(BAD_REQUEST)
        if not self._head_lines:
            if not line and not self._ate_empty_line:
                self._ate_empty_line = True
                return None
            if not _is_valid_request_line(line):
                return self._refuse(BAD_REQUEST)
        elif not line:
            lines, self._head_lines = self._head_lines, []
            return self._head_complete(lines)
        self._head_lines.append(line)
        return None

    def _head_received(self, method, uri, version, headers):
        try:
            framing = _framing(headers)
        except Malformed:
            return self._refuse(BAD_REQUEST)
        fields = {
            "method": method,
            "uri": uri,
            "version": version,
            "headers": headers,
            "content": bytearray(),
            "response": {},
        }
        persistent = version == b"HTTP/1.1"
        if persistent:
            connection = _header(headers, b"Connection")
            if connection is not None and any(t.lower() == b"close" for t in connection.split(b" ")):
                fields["response"][b"Connection"] = b"close"
                persistent = False
        if framing != "chunked" and framing is not None and framing > self.site.max_content_length:
            # Refused before any 100 Continue: no upload is invited only
            # to be refused.
            return self._refuse(TOO_LARGE)
        expect = _header(headers, b"Expect")
        if expect is not None and expect.lower() == b"100-continue" and version == b"HTTP/1.1":
            self._out.append(CONTINUE)
        if framing is None or framing == 0:
            return self._finish(fields, persistent)
        decoder = _Chunked() if framing == "chunked" else _Length(framing)
        self._body = (fields, decoder, persistent)
        return None

    def _finish(self, fields, persistent):
        self._handled += 1
        request = self.site.requestFactory(
            self,
            fields["method"],
            fields["uri"],
            fields["version"],
            fields["headers"],
            bytes(fields["content"]),
        )
        request.responseHeaders.update(fields["response"])
        request._persistent = persistent
        body, head_only = request.render(self.site.resource)
        self._head_size = 0
        self._ate_empty_line = False
        if body is NOT_DONE_YET:
            if not request.finished:
                self._waiting = request
                self._send()
                self.transport.pauseProducing()
            return
        self._out.append(_encode(request, body, head_only))
        if not persistent:
            self._close()

    def _requestDone(self, request, body):
        """A request rendered NOT_DONE_YET has finished: send its response,
        then carry on with the requests that arrived meanwhile."""
        self._out.append(_encode(request, body, request.method == b"HEAD"))
        waited = self._waiting is request
        if waited:
            self._waiting = None
            self.transport.resumeProducing()
        if not request._persistent:
            self._close()
        elif waited:
            self.dataReceived(b"")

    def _refuse(self, status):
        self._out.append(status)
        self._close()

    def _close(self):
        self._closing = True
        self._send()
        self.transport.loseConnection()

    def _send(self):
        if self._out:
            self.transport.write(b"".join(self._out))
            self._out.clear()


def _header(headers, canonical_name):
    for name, value in headers:
        if name == canonical_name:
            return value
    return None


def _is_token(data):
    return bool(data) and not data.translate(None, _TOKEN)


def _is_valid_request_line(line):
    parts = line.split(b" ")
    if len(parts) != 3:
        return False
    method, target, version = parts
    return (
        _is_token(method)
        and bool(target)
        and not target.translate(None, _URI)
        and version in (b"HTTP/1.1", b"HTTP/1.0")
    )


def _parse_head(lines):
    """Method, target, version and headers (canonical names, trimmed
    values) of a head, continuation lines folded; Malformed otherwise. No
    byte of a valid head is NUL, CR or LF: the request line was checked
    by _is_valid_request_line, names are tokens and values are checked."""
    request_line, header_lines = lines[0], []
    for index, line in enumerate(lines[1:], start=1):
        if line[:1] in (b" ", b"\t"):
            if index == 1:
                raise Malformed
            header_lines[-1] += b" " + line.lstrip(b" \t")
        else:
            header_lines.append(line)
    method, uri, version = request_line.split(b" ")
    if len(header_lines) > MAX_HEADERS:
        raise Malformed
    headers = []
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if not colon or not _is_token(name):
            raise Malformed
        value = value.strip(b" \t")
        if value.translate(None, _VALUE):
            raise Malformed
        headers.append((canonicalize(name), value))
    return method, uri, version, headers


def _framing(headers):
    """None (no body), a length, or "chunked"; Malformed if ambiguous."""
    framing = None
    for name, value in headers:
        if name == b"Content-Length":
            if not value or not value.isdigit():
                raise Malformed
            chosen = int(value)
        elif name == b"Transfer-Encoding":
            if value.lower() == b"identity":
                continue
            if value.lower() != b"chunked":
                raise Malformed
            chosen = "chunked"
        else:
            continue
        if framing is not None:
            raise Malformed
        framing = chosen
    return framing


def _append(content, data, limit):
    if len(content) + len(data) > limit:
        raise TooLarge
    content += data


class _Length:
    def __init__(self, remaining):
        self.remaining = remaining

    def decode(self, buffer, pos, content, limit):
        take = min(len(buffer) - pos, self.remaining)
        _append(content, buffer[pos : pos + take], limit)
        self.remaining -= take
        return take, self.remaining == 0


class _Chunked:
    def __init__(self):
        self.state = "size"
        self.remaining = 0
        self.trailer = 0

    def decode(self, buffer, start, content, limit):
        pos = start
        while True:
            if self.state == "size":
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    if len(buffer) - pos > MAX_CHUNK_SIZE_LINE:
                        raise Malformed
                    return pos - start, False
                if eol - pos >= MAX_CHUNK_SIZE_LINE:
                    raise Malformed
                size = _chunk_size(bytes(buffer[pos:eol]))
                pos = eol + 2
                if size == 0:
                    self.state, self.trailer = "trailer", 0
                else:
                    self.state, self.remaining = "data", size
            elif self.state == "data":
                take = min(len(buffer) - pos, self.remaining)
                _append(content, buffer[pos : pos + take], limit)
                pos += take
                self.remaining -= take
                if self.remaining:
                    return pos - start, False
                self.state = "data-end"
            elif self.state == "data-end":
                if len(buffer) - pos < 2:
                    return pos - start, False
                if buffer[pos : pos + 2] != b"\r\n":
                    raise Malformed
                pos += 2
                self.state = "size"
            else:
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    if self.trailer + len(buffer) - pos > MAX_TRAILER_SIZE:
                        raise Malformed
                    return pos - start, False
                length, pos = eol - pos, eol + 2
                if length == 0:
                    return pos - start, True
                self.trailer += length + 2
                if self.trailer > MAX_TRAILER_SIZE:
                    raise Malformed


def _chunk_size(line):
    size, _, extensions = line.partition(b";")
    if not size or size.translate(None, _HEX) or extensions.translate(None, _EXTENSION):
        raise Malformed
    return int(size, 16)


_SPECIAL_NAMES = {
    b"Content-Md5": b"Content-MD5",
    b"Dnt": b"DNT",
    b"Etag": b"ETag",
    b"P3p": b"P3P",
    b"Te": b"TE",
    b"Www-Authenticate": b"WWW-Authenticate",
    b"X-Xss-Protection": b"X-XSS-Protection",
}


# Names already canonicalised: a few hundred at most in practice, every
# request of a connection repeating them.
_canonical = {}
_CANONICAL_CACHED = 1024


def canonicalize(name):
    """Twisted's capitalisation of a header name: `Content-Length`."""
    canonical = _canonical.get(name)
    if canonical is None:
        words = b"-".join(word[:1].upper() + word[1:].lower() for word in name.split(b"-"))
        canonical = _SPECIAL_NAMES.get(words, words)
        if len(_canonical) < _CANONICAL_CACHED:
            _canonical[name] = canonical
    return canonical


def canonical_name(name):
    """The canonical form of `name`, or None if it is not a token."""
    canonical = _canonical.get(name)
    if canonical is None and _is_token(name):
        canonical = canonicalize(name)
    return canonical


def sanitize_value(value):
    """Line breaks in a header value become single spaces, as Twisted does."""
    if b"\r" not in value and b"\n" not in value:
        return value
    out = bytearray()
    rest = value
    while True:
        cut = min((i for i in (rest.find(b"\r"), rest.find(b"\n")) if i >= 0), default=-1)
        if cut < 0:
            break
        out += rest[:cut]
        rest = rest[cut + (2 if rest[cut : cut + 2] == b"\r\n" else 1) :]
        if rest:
            out += b" "
    out += rest
    return bytes(out)


def escape(text):
    """HTML-escape text for an error page."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def error_page(code, brief, detail):
    """twisted.web's error page body."""
    return (
        f"\n<html>\n  <head><title>{code} - {brief}</title></head>\n  <body>\n"
        f"    <h1>{brief}</h1>\n    <p>{detail}</p>\n  </body>\n</html>\n"
    ).encode("utf-8")


def _encode(request, body, head_only):
    out = [request.clientproto, b" ", str(request.code).encode(), b" ", RESPONSES.get(request.code, b"Unknown Status"), b"\r\n"]
    for name, value in request.responseHeaders.items():
        out += [name, b": ", value, b"\r\n"]
    out.append(b"\r\n")
    if not head_only and request.code not in (204, 304):
        out.append(body)
    return b"".join(out)


RESPONSES = {
    100: b"Continue", 101: b"Switching Protocols", 200: b"OK", 201: b"Created",
    202: b"Accepted", 203: b"Non-Authoritative Information", 204: b"No Content",
    205: b"Reset Content.", 206: b"Partial Content", 207: b"Multi-Status",
    300: b"Multiple Choices", 301: b"Moved Permanently", 302: b"Found",
    303: b"See Other", 304: b"Not Modified", 305: b"Use Proxy",
    307: b"Temporary Redirect", 308: b"Permanent Redirect", 400: b"Bad Request",
    401: b"Unauthorized", 402: b"Payment Required", 403: b"Forbidden",
    404: b"Not Found", 405: b"Method Not Allowed", 406: b"Not Acceptable",
    407: b"Proxy Authentication Required", 408: b"Request Time-out",
    409: b"Conflict", 410: b"Gone", 411: b"Length Required",
    412: b"Precondition Failed", 413: b"Request Entity Too Large",
    414: b"Request-URI Too Long", 415: b"Unsupported Media Type",
    416: b"Requested Range not satisfiable", 417: b"Expectation Failed",
    418: b"I'm a teapot", 500: b"Internal Server Error", 501: b"Not Implemented",
    502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Time-out",
    505: b"HTTP Version not supported", 507: b"Insufficient Storage Space",
    510: b"Not Extended",
}
