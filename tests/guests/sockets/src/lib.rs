//! A guest that opens its own TCP connection through `std::net` to the
//! address it is sent, so it imports `wasi:sockets`: weft links it with
//! every use denied, so the guest must answer `refused`.

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
