# Twisted's UDP echo example (tests/reference/udp_echo.py) on weft.
from weft.internet.protocol import DatagramProtocol
from weft.internet import reactor


class Echo(DatagramProtocol):
    def datagramReceived(self, data, addr):
        print(f"received {data!r} from {addr}")
        self.transport.write(data, addr)


reactor.listenUDP(9999, Echo())
reactor.run()
