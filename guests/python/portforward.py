# Twisted's port forwarder (tests/reference/portforward.py): Twisted's own
# twisted.protocols.portforward.ProxyFactory, forwarding to the backend
# config.backend=HOST:PORT names (the reference program takes it from its
# command line; weft's configuration answers once the component is served).
from twisted.internet import endpoints, reactor
from twisted.protocols import portforward

from weft import config

class ConfiguredProxyFactory(portforward.ProxyFactory):
    def __init__(self):
        portforward.ProxyFactory.__init__(self, None, None)

    def startFactory(self):
        host, _, port = config.get("backend", "127.0.0.1:9000").rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)

endpoints.serverFromString(reactor, "tcp:8000").listen(ConfiguredProxyFactory())
reactor.run()
