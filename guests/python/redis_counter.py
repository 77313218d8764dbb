# The seed's HttpServer example (tests/reference/counter.py) with its count
# in Redis: each GET runs INCR on config.key (default weft:counter) at
# config.redis (HOST:PORT) and is answered when the reply arrives
# (NOT_DONE_YET), so weft processes sharing one Redis count together. A
# Redis that is down gets a 503; the next request connects again.
from weft import config
from weft.internet import protocol, reactor
from weft.protocols import basic
from weft.web import resource, server


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
            request.write(b"I am request #" + line[1:] + b"\n")
        else:
            request.setResponseCode(503)
            request.write(b"Redis refused the request\n")
        request.finish()

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
            request.setResponseCode(503)
            request.write(b"Redis is unavailable\n")
            request.finish()


class Counter(resource.Resource):
    isLeaf = True

    def __init__(self):
        resource.Resource.__init__(self)
        # Built when weft serves it, so the configuration can be read.
        self.key = config.get("key", "weft:counter").encode()
        self.redis = RedisFactory()

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        self.redis.incr(self.key, request)
        return server.NOT_DONE_YET
