# Twisted's echo server, as on twistedmatrix.com: a Twisted program, built
# unchanged by `weft-python echo.py` and served by `weft serve
# echo.wasm@tcp:1234` (its one listen serves whatever endpoint weft is
# given). What `weft new --lang python` starts a project with.
from twisted.internet import protocol, reactor, endpoints

class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)

class EchoFactory(protocol.Factory):
    def buildProtocol(self, addr):
        return Echo()

endpoints.serverFromString(reactor, "tcp:1234").listen(EchoFactory())
reactor.run()
