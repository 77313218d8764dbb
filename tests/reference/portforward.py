# Twisted's own port forwarder, twisted.protocols.portforward, listening on
# the port given first and forwarding to 127.0.0.1 on the port given second.
import sys

from twisted.internet import endpoints, reactor
from twisted.protocols import portforward

endpoint = endpoints.serverFromString(reactor, "tcp:%s:interface=127.0.0.1" % sys.argv[1])
endpoint.listen(portforward.ProxyFactory("127.0.0.1", int(sys.argv[2])))
reactor.run()
