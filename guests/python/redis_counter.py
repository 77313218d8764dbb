# The seed's HttpServer example (tests/reference/counter.py) with its count
# in Redis: each GET runs INCR on config.key (default weft:counter) at
# config.redis (HOST:PORT) and is answered when the reply arrives
# (NOT_DONE_YET), so weft processes sharing one Redis count together. A
# Redis that is down gets a 503; the next request connects again.
from twisted.internet import endpoints, protocol, reactor
from twisted.protocols import basic
from twisted.web import resource, server

from weft import config


class RedisClient(basic.LineReceiver):
    """RESP replies, one per line: `:N` for INCR, `-ERR ...` for an error."""

    def connectionMade(self):
        self.factory.connected(self)

    def lineReceived(self, line):
        self.factory.replied(line)

    def connectionLost(self, reason):
        self.factory.lost(self)


class RedisFactory(protocol.ClientFactory):
    """One connection to Redis and the requests waiting for its replies,
    oldest first (Redis answers in order)."""

    protocol = RedisClient

    def __init__(self):
        self.client = None
        self.connecting = False
        self.queued = []
        self.waiting = []

    def incr(self, key, request):
        command = b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key)
        self.waiting.append(request)
        if self.client is not None:
            self.client.transport.write(command)
            return
        self.queued.append(command)
        if not self.connecting:
            self.connecting = True
            host, _, port = config.get("redis", "").rpartition(":")
            reactor.connectTCP(host.strip("[]"), int(port or 0), self, timeout=2)

    def connected(self, client):
        self.client, self.connecting = client, False
        client.transport.write(b"".join(self.queued))
        self.queued = []

    def replied(self, line):
        request = self.waiting.pop(0)
        if line.startswith(b":"):
            answer(request, 200, b"I am request #" + line[1:] + b"\n")
        else:
            answer(request, 503, b"Redis refused the request\n")

    def lost(self, client):
        if self.client is client:
            self.client = None
            self.failAll()

    def clientConnectionFailed(self, connector, reason):
        self.connecting = False
        self.queued = []
        self.failAll()

    def failAll(self):
        waiting, self.waiting = self.waiting, []
        for request in waiting:
            answer(request, 503, b"Redis is unavailable\n")


def answer(request, code, body):
    """Finish a request left NOT_DONE_YET, with a Content-Length (without
    one, twisted.web would send the body chunked)."""
    request.setResponseCode(code)
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


class Counter(resource.Resource):
    isLeaf = True

    def __init__(self):
        resource.Resource.__init__(self)
        self.redis = RedisFactory()

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        # weft's configuration answers once the component is served.
        self.redis.incr(config.get("key", "weft:counter").encode(), request)
        return server.NOT_DONE_YET


endpoints.serverFromString(reactor, "tcp:8080").listen(server.Site(Counter()))
reactor.run()
