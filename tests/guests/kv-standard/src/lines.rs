// The line protocol both key-value test guests share: its state, its
// framing, the component's exports; each guest's `Lines::answer` (after
// its `generate!`s and `use`s, with `store` its key-value bindings) says
// what a line does.

struct Lines {
    transport: Transport,
    buffer: RefCell<Vec<u8>>,
    bucket: RefCell<Option<store::Bucket>>,
}

fn shown(error: store::Error) -> String {
    match error {
        store::Error::NoSuchStore => "error: no-such-store".into(),
        store::Error::AccessDenied => "error: access-denied".into(),
        store::Error::Other(why) => format!("error: {why}"),
    }
}

impl GuestProtocol for Lines {
    fn new(transport: Transport, _client: Option<u64>) -> Self {
        Self {
            transport,
            buffer: RefCell::default(),
            bucket: RefCell::default(),
        }
    }

    fn data_received(&self, data: Vec<u8>) {
        self.buffer.borrow_mut().extend_from_slice(&data);
        loop {
            let line = {
                let mut buffer = self.buffer.borrow_mut();
                let Some(end) = buffer.iter().position(|b| *b == b'\n') else {
                    return;
                };
                let line: Vec<u8> = buffer.drain(..=end).collect();
                String::from_utf8_lossy(&line).trim_end().to_owned()
            };
            let mut reply = self.answer(&line);
            reply.push('\n');
            self.transport.write_checked(reply.as_bytes());
        }
    }

    fn read_connection_lost(&self) {
        self.transport.lose_connection();
    }

    fn connection_lost(&self, _reason: CloseReason) {}
}

struct Component;

impl Guest for Component {
    type Protocol = Lines;
}

impl events::Guest for Component {
    fn start() {}

    fn stop() {}

    fn timer_fired(_token: u64) {}

    fn connect_failed(_token: u64, _reason: ConnectError) {}
}

// No-ops: each line's answer is all it writes, so it watches no write-buffer.
impl producers::Guest for Component {
    fn pause_producing(_token: u64) {}

    fn resume_producing(_token: u64) {}
}

// Component exports exist only on wasm; the workspace's native build of
// this crate must not define them.
#[cfg(target_arch = "wasm32")]
export!(Component);
