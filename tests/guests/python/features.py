# A Twisted program using what weft's earlier look-alike of Twisted lacked,
# built unchanged. It listens four times; each weft service picks one with
# config.listen=PORT:
# - 7001, commands, one per CRLF line, each answered `ok RESULT` or `error TYPE:
#   MESSAGE`: `gather` (gatherResults), `list` (DeferredList), `async WORD`
#   (async def and ensureDeferred), `cancel` (an inlineCallbacks generator
#   cancelled while it waits), `connect HOST:PORT` (HostnameEndpoint, the
#   backend's first line), `connect-twice HOST:PORT` (two connectTCP at once:
#   past a max-outbound of 1, the second's clientConnectionFailed reason),
#   `thread`, `process`, `file PATH` (refused), `immortal` (whether the
#   build's objects are immortal, and whether this connection's are),
#   `stream MIB` (a streaming producer writing MIB mebibytes of the pattern,
#   then `ok done`), `send MIB` (FileSender sending an in-memory file of
#   about MIB mebibytes of the pattern, then `ok sent`), `print WORDS` (to
#   stdout, then `ok printed`), `splice HOST:PORT` (weft's spliceTo: `ok
#   spliced`, then the host relays this connection and the backend both
#   ways, past this protocol); the pattern's byte at offset i is i % 251,
#   so that a lost or repeated chunk shows;
# - 7002, Int32StringReceiver: each string comes back reversed;
# - 7003, AMP: the `Sum` command;
# - 7004, twisted.web: /hello (static.Data), /slow (NOT_DONE_YET finished by
#   deferLater), /boom (an exception: Twisted's 500 page), /observe (adds a
#   log observer of the program's own, which keeps the access log's lines)
#   and /observed (the lines it kept, one per line).
import io
import sys

from twisted.internet import defer, endpoints, interfaces, protocol, reactor, task
from twisted.logger import globalLogPublisher
from twisted.protocols import amp, basic
from twisted.web import resource, server, static
from zope.interface import implementer


class Greeting(basic.LineReceiver):
    """Waits for the backend's first line."""

    def connectionMade(self):
        self.first = defer.Deferred()

    def lineReceived(self, line):
        self.first.callback(line.decode())
        self.transport.loseConnection()


# The pattern: a period that no chunk size is a multiple of.
PERIOD = 251
CHUNK = 65536
CYCLES = bytes(range(PERIOD)) * (CHUNK // PERIOD + 2)


def pattern(offset, length):
    """The pattern's `length` bytes at `offset`, for `length` up to CHUNK."""
    start = offset % PERIOD
    return CYCLES[start : start + length]


@implementer(interfaces.IPushProducer)
class Spliced(protocol.Protocol):
    """The backend's side of a splice: the host relays its input, so its
    dataReceived (Protocol's, which drops it) is never called."""


class Firehose:
    """Writes `total` bytes of the pattern, 64 KiB a write from a
    callLater(0) loop, while its consumer has not paused it."""

    def __init__(self, consumer, total, done):
        self.consumer, self.total, self.done = consumer, total, done
        self.sent = 0
        self.paused = self.stopped = False
        self.turn = None

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        if self.turn is None and not self.stopped:
            self.turn = reactor.callLater(0, self.produce)

    def stopProducing(self):
        self.stopped = True
        if self.turn is not None:
            self.turn.cancel()
            self.turn = None

    def produce(self):
        self.turn = None
        # A mebibyte a turn at most, so that the reactor's other work runs
        # between turns.
        for _ in range(16):
            if self.paused or self.stopped or self.sent >= self.total:
                break
            length = min(CHUNK, self.total - self.sent)
            self.consumer.write(pattern(self.sent, length))
            self.sent += length
        if self.sent >= self.total:
            self.consumer.unregisterProducer()
            self.done()
        elif not self.paused and not self.stopped:
            self.turn = reactor.callLater(0, self.produce)


class Commands(basic.LineReceiver):
    def lineReceived(self, line):
        command, _, argument = line.decode().partition(" ")
        handler = getattr(self, "do_" + command.replace("-", "_"), None)
        if handler is None:
            self.sendLine(b"error unknown command")
            return
        d = defer.maybeDeferred(handler, argument)
        d.addCallbacks(self.ok, self.error)

    def ok(self, result):
        if result is not None:
            self.sendLine(f"ok {result}".encode())

    def error(self, failure):
        self.sendLine(f"error {failure.type.__name__}: {failure.getErrorMessage()}".encode())

    def do_print(self, words):
        print(words)
        return "printed"

    def do_immortal(self, _):
        # What the build's snapshot holds (the factory, this class, Twisted)
        # against what this connection made (its protocol, a new object).
        snapshot = [self.factory, Commands, basic.LineReceiver.sendLine, defer.Deferred]
        made = [self, object(), [1, 2]]
        return f"{all(map(sys._is_immortal, snapshot))} {any(map(sys._is_immortal, made))}"

    def do_gather(self, _):
        squares = [task.deferLater(reactor, 0.01 * (5 - i), lambda i=i: i * i) for i in range(5)]
        return defer.gatherResults(squares)

    def do_list(self, _):
        ds = [defer.succeed(1), defer.fail(ValueError("no")), task.deferLater(reactor, 0.01, lambda: 3)]
        d = defer.DeferredList(ds, consumeErrors=True)
        return d.addCallback(lambda results: [r if ok else r.type.__name__ for ok, r in results])

    def do_async(self, word):
        async def later():
            await task.deferLater(reactor, 0.01, lambda: None)
            return "awaited " + word

        return defer.ensureDeferred(later())

    def do_cancel(self, _):
        state = []

        @defer.inlineCallbacks
        def waiting():
            try:
                yield task.deferLater(reactor, 60, lambda: None)
                state.append("finished")
            except defer.CancelledError:
                state.append("cancelled inside")
                raise

        d = waiting()
        reactor.callLater(0.01, d.cancel)
        return d.addErrback(lambda failure: failure.trap(defer.CancelledError) and state)

    def do_connect(self, where):
        host, _, port = where.rpartition(":")
        endpoint = endpoints.HostnameEndpoint(reactor, host, int(port))
        d = endpoint.connect(protocol.Factory.forProtocol(Greeting))
        return d.addCallback(lambda greeting: greeting.first)

    def do_connect_twice(self, where):
        host, _, port = where.rpartition(":")
        failed = defer.Deferred()

        class Reporting(protocol.ClientFactory):
            protocol = Greeting

            def clientConnectionFailed(self, connector, reason):
                failed.callback(f"{reason.type.__name__}: {reason.getErrorMessage()}")

        reactor.connectTCP(host, int(port), protocol.ClientFactory.forProtocol(Greeting))
        reactor.connectTCP(host, int(port), Reporting())
        return failed

    def do_splice(self, where):
        host, _, port = where.rpartition(":")
        endpoint = endpoints.HostnameEndpoint(reactor, host, int(port))

        def spliced(backend):
            self.transport.spliceTo(backend.transport)
            backend.transport.spliceTo(self.transport)
            return "spliced"

        return endpoint.connect(protocol.Factory.forProtocol(Spliced)).addCallback(spliced)

    def do_thread(self, _):
        from twisted.internet import threads

        return threads.deferToThread(lambda: 1)

    def do_process(self, _):
        reactor.spawnProcess(protocol.ProcessProtocol(), "/bin/ls")

    def do_file(self, path):
        with open(path) as file:
            return file.read()

    def do_stream(self, mebibytes):
        done = defer.Deferred()
        producer = Firehose(self.transport, int(mebibytes) << 20, lambda: done.callback("done"))
        self.transport.registerProducer(producer, True)
        producer.resumeProducing()
        return done

    def do_send(self, mebibytes):
        # Whole periods of the pattern: one bytes object the file shares.
        file = io.BytesIO(bytes(range(PERIOD)) * ((int(mebibytes) << 20) // PERIOD))
        d = basic.FileSender().beginFileTransfer(file, self.transport)
        return d.addCallback(lambda _: "sent")


class Reverse(basic.Int32StringReceiver):
    def stringReceived(self, string):
        self.sendString(string[::-1])


class Sum(amp.Command):
    arguments = [(b"a", amp.Integer()), (b"b", amp.Integer())]
    response = [(b"total", amp.Integer())]


class Adder(amp.AMP):
    @Sum.responder
    def sum(self, a, b):
        return {"total": a + b}


class Slow(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        def finish():
            request.write(b"slow and sure\n")
            request.finish()

        task.deferLater(reactor, 0.05, finish)
        return server.NOT_DONE_YET


class Boom(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        raise RuntimeError("boom")


observed = []


def keep_access_lines(event):
    if event.get("log_format") == "{log_io}":
        observed.append(event["log_io"])


class Observe(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        globalLogPublisher.addObserver(keep_access_lines)
        return b"observing\n"


class Observed(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return "".join(line + "\n" for line in observed).encode()


root = resource.Resource()
root.putChild(b"hello", static.Data(b"hello from twisted.web\n", "text/plain"))
root.putChild(b"slow", Slow())
root.putChild(b"boom", Boom())
root.putChild(b"observe", Observe())
root.putChild(b"observed", Observed())

endpoints.serverFromString(reactor, "tcp:7001").listen(protocol.Factory.forProtocol(Commands))
endpoints.serverFromString(reactor, "tcp:7002").listen(protocol.Factory.forProtocol(Reverse))
endpoints.serverFromString(reactor, "tcp:7003").listen(protocol.Factory.forProtocol(Adder))
endpoints.serverFromString(reactor, "tcp:7004").listen(server.Site(root))
reactor.run()
