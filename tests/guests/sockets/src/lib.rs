//! A guest that opens its own TCP connection through `std::net`, so it
//! imports `wasi:sockets`, which weft does not provide: it must be refused
//! at load time, with the interface named.

use weft_guest::{Factory, Protocol, Transport};

struct Dialer {
    transport: Transport,
}

impl Protocol for Dialer {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn data_received(&mut self, data: &[u8]) {
        let target = String::from_utf8_lossy(data);
        let reached = std::net::TcpStream::connect(target.trim()).is_ok();
        self.transport
            .write(if reached { b"reached\n" } else { b"refused\n" });
    }
}

#[derive(Default)]
struct DialerFactory;

impl Factory for DialerFactory {
    type Protocol = Dialer;

    fn build_protocol(&'static self, transport: Transport) -> Dialer {
        Dialer { transport }
    }
}

weft_guest::export!(DialerFactory);
