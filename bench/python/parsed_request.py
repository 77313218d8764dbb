"""What handing twisted.web a request the host has already parsed would
save, measured where it would run: inside a component. Build and ask:

    cargo xtask python bench/python/parsed_request.py parsed.wasm -- 9999
    weft serve parsed.wasm@tcp:9999:interface=127.0.0.1
    echo 400 | nc -q 3 127.0.0.1 9999

Each line `N` runs N requests of the HTTP counter through a `Site` on a
`StringTransport` both ways (the whole of `HTTPChannel.dataReceived`,
then the same `Request` built and handed its method, path and header)
and answers with the time a request took each way."""

import sys
import time

from twisted.internet import endpoints, protocol, reactor
from twisted.internet.testing import StringTransport
from twisted.web import resource, server

REQUEST = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


class Counter(resource.Resource):
    isLeaf = True
    numberRequests = 0

    def render_GET(self, request):
        self.numberRequests += 1
        request.setHeader(b"content-type", b"text/plain")
        content = "I am request #{}\n".format(self.numberRequests)
        return content.encode("ascii")


def connected():
    """twisted.web's channel for a new connection, and its transport."""
    wrapper = server.Site(Counter()).buildProtocol(None)
    transport = StringTransport()
    wrapper.makeConnection(transport)
    return wrapper, transport


def hand_over(channel):
    """What a request parsed by the host would still run in the guest: its
    `Request` built and queued, its header set, the idle timeout held, as
    `HTTPChannel` does, then `requestReceived` (and, through `finish`,
    `requestDone`)."""
    request = channel.requestFactory(channel, len(channel.requests))
    channel.requests.append(request)
    request.requestHeaders.setRawHeaders(b"host", [b"h"])
    request.gotLength(0)
    if channel.timeOut:
        channel._savedTimeOut = channel.setTimeout(None)
    channel._handlingRequest = True
    request.requestReceived(b"GET", b"/", b"HTTP/1.1")


def parsed_by_twisted(count):
    wrapper, transport = connected()
    for _ in range(count):
        wrapper.dataReceived(REQUEST)
        transport.clear()


def parsed_by_the_host(count):
    wrapper, transport = connected()
    for _ in range(count):
        hand_over(wrapper._channel)
        transport.clear()


def answers_match():
    """Both ways answer with the same bytes, but for the date."""
    answers = []
    for deliver in (lambda w: w.dataReceived(REQUEST), lambda w: hand_over(w._channel)):
        wrapper, transport = connected()
        deliver(wrapper)
        lines = transport.value().split(b"\r\n")
        answers.append([line for line in lines if not line.startswith(b"Date:")])
    return answers[0] == answers[1]


class Measure(protocol.Protocol):
    def dataReceived(self, data):
        count = int(data.strip() or b"200")
        took = {}
        for way in (parsed_by_twisted, parsed_by_the_host):
            way(20)
            started = time.perf_counter()
            way(count)
            took[way] = (time.perf_counter() - started) / count * 1e6
        whole, handed = took[parsed_by_twisted], took[parsed_by_the_host]
        self.transport.write(
            f"parsed by twisted.web {whole:.1f} us, by the host {handed:.1f} us: "
            f"{whole / handed:.2f}x (same answers: {answers_match()})\n".encode()
        )


endpoints.serverFromString(reactor, f"tcp:{sys.argv[1]}").listen(protocol.Factory.forProtocol(Measure))
reactor.run()
