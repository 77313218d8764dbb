//! The HTTP request counter: a twisted.web `Site` whose one leaf resource
//! answers every GET with its running count (the reference's `counter.py`).

use std::cell::Cell;

use weft_guest::web::{Request, Resource, Site};

#[derive(Default)]
struct Counter {
    number_requests: Cell<u64>,
}

impl Resource for Counter {
    fn render_get(&self, request: &mut Request) -> Vec<u8> {
        self.number_requests.set(self.number_requests.get() + 1);
        request.set_header("content-type", "text/plain");
        format!("I am request #{}\n", self.number_requests.get()).into_bytes()
    }
}

weft_guest::export!(Site<Counter> = Site::new(Counter::default()));
