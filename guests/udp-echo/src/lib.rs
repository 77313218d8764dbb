//! UDP echo: every datagram is sent back to its sender (Twisted's UDP echo
//! example, the reference's `udp_echo.py`).

use weft_guest_datagram::{Address, DatagramProtocol, Transport, println};

#[derive(Default)]
struct Echo {
    transport: Transport,
}

impl DatagramProtocol for Echo {
    fn datagram_received(&mut self, data: &[u8], addr: Address) {
        println!("received {:?} from {addr}", String::from_utf8_lossy(data));
        self.transport.write(data, &addr);
    }
}

weft_guest_datagram::export!(Echo);
