# Twisted's UDP echo example (docs/core/howto/listings/udp/basic_example.py),
# port from argv, on 127.0.0.1.
import sys
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol


class Echo(DatagramProtocol):
    def datagramReceived(self, data, addr):
        print(f"received {data!r} from {addr}")
        self.transport.write(data, addr)


reactor.listenUDP(int(sys.argv[1]), Echo(), interface="127.0.0.1")
reactor.run()
