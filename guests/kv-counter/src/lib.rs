//! The HTTP request counter with its count kept by the host: the seed
//! `counter.py`'s resource, counting with `wasi:keyvalue`'s atomic
//! increment, so every worker, instance, version and (on Redis) process
//! of the service counts together, and a trap or a reload loses nothing.

use std::cell::RefCell;

use weft_guest::keyvalue::{Bucket, Error};
use weft_guest::web::{Request, Resource, Site};
use weft_guest::{config, log};

#[derive(Default)]
struct Counter {
    /// The bucket, opened at the first request that counts.
    bucket: RefCell<Option<Bucket>>,
    /// A path whose request panics (`config.crash=/crash`), to try out
    /// what a trap does; unset, none does.
    crash: Option<String>,
}

impl Counter {
    fn count(&self) -> Result<i64, Error> {
        let mut bucket = self.bucket.borrow_mut();
        if bucket.is_none() {
            *bucket = Some(Bucket::open("counter")?);
        }
        bucket
            .as_ref()
            .map_or(Ok(0), |bucket| bucket.increment("requests", 1))
    }
}

impl Resource for Counter {
    fn render_get(&self, request: &mut Request) -> Vec<u8> {
        if self.crash.as_deref().map(str::as_bytes) == Some(request.path()) {
            panic!(
                "asked to crash by a request to {}",
                self.crash.as_deref().unwrap_or_default()
            );
        }
        request.set_header("content-type", "text/plain");
        match self.count() {
            Ok(number_requests) => format!("I am request #{number_requests}\n").into_bytes(),
            Err(error) => {
                log::warn(&format!("not counted: {error}"));
                request.set_response_code(503);
                b"The count is unavailable\n".to_vec()
            }
        }
    }
}

weft_guest::export!(
    Site<Counter> = Site::new(Counter {
        crash: config::get("crash"),
        ..Counter::default()
    })
);
