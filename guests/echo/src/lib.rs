//! Echo: every byte received is written back, in order (the Twisted
//! reference's `echo.py`).

use weft_guest::{Factory, Protocol, Transport};

struct Echo {
    transport: Transport,
}

impl Protocol for Echo {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn data_received(&mut self, data: &[u8]) {
        self.transport.write(data);
    }
}

#[derive(Default)]
struct EchoFactory;

impl Factory for EchoFactory {
    type Protocol = Echo;

    fn build_protocol(&'static self, transport: Transport) -> Echo {
        Echo { transport }
    }
}

weft_guest::export!(EchoFactory);
